"""GALEX and unWISE cutouts from the Legacy Survey viewer (``fits-cutout``).

One request per survey and target: ``layer=galex&pixscale=1.5`` gives FUV, NUV; ``layer=unwise-neo7``
``&pixscale=2.75`` gives W1, W2; both ``size=32`` at (ra, dec). Each reply is one (2, 32, 32) cube whose
band order is read from its header (BAND0/BAND1) and returned in mantis_data.bands order. The viewer
returns a cube of zeros where GALEX has no data: that is a valid cutout (status ok), not no_coverage.
Responses are validated before use: FITS (not an HTML page), shape, bands, WCS centre within a pixel.
"""

from __future__ import annotations

import numpy as np

from mantis_data.bands import LEGACY_SURVEY_LAYERS, SURVEYS

from .base import Stamps
from .client import (
    HttpClient,
    InvalidResponse,
    RequestFailed,
    check_base_url,
    check_centre,
    format_coordinate,
)
from .fits import CutoutError, read_legacy_cube

DEFAULT_LEGACY_URL = "https://www.legacysurvey.org/viewer"
"""Base URL of the Legacy Survey viewer (``fits-cutout`` lives under it)."""

CUTOUT_ENDPOINT = "fits-cutout"
LEGACY_SURVEYS: tuple[str, ...] = tuple(LEGACY_SURVEY_LAYERS)
"""The surveys served through the viewer ('galex', 'unwise')."""


def layer_params(survey: str, ra: float, dec: float) -> dict[str, str]:
    """Query parameters of the viewer cutout of ``survey`` at (ra, dec) degrees (layer, pixscale, size)."""
    if survey not in LEGACY_SURVEY_LAYERS:
        raise ValueError(f"the Legacy Survey viewer serves {LEGACY_SURVEYS}, not {survey!r}")
    s = SURVEYS[survey]
    return {
        "ra": format_coordinate(ra),
        "dec": format_coordinate(dec),
        "layer": LEGACY_SURVEY_LAYERS[survey],
        "pixscale": f"{s.pixel_scale_arcsec:g}",
        "size": str(s.cutout_size),
    }


class LegacySurveyClient:
    """Requests and validates Legacy Survey viewer cubes through an HttpClient (base URL configurable)."""

    def __init__(self, client: HttpClient, base_url: str = DEFAULT_LEGACY_URL, max_offset_px: float = 1.0):
        self.client = client
        self.base_url = check_base_url(base_url, "the Legacy Survey URL (--legacy-url)")
        self.max_offset_px = float(max_offset_px)

    def validate(self, body: bytes, survey: str, ra: float, dec: float, name: str = "<response>") -> np.ndarray:
        """The cube float32 (2, 32, 32) in bands.py order (units: bands.py) of a viewer reply, or InvalidResponse."""
        try:
            cube, header = read_legacy_cube(body, survey, name=name)
        except CutoutError as exc:
            raise InvalidResponse(exc.reason) from None
        check_centre(header, ra, dec, self.max_offset_px)
        return cube

    def cube(self, survey: str, ra: float, dec: float) -> tuple[bytes, np.ndarray, int]:
        """(raw FITS bytes, validated cube, attempts) of ``survey`` ('galex' or 'unwise') at (ra, dec) degrees."""
        params = layer_params(survey, ra, dec)

        def check(body: bytes, headers) -> tuple[bytes, np.ndarray]:
            return body, self.validate(body, survey, ra, dec)

        (body, cube), attempts = self.client.get(f"{self.base_url}/{CUTOUT_ENDPOINT}", params, check)
        return body, cube, attempts


class LegacySurveySource:
    """Cutout source for GALEX and unWISE: ``get`` fills ``Stamps.galex`` and ``Stamps.unwise`` (PS1 left None)."""

    def __init__(
        self, client: HttpClient | None = None, base_url: str = DEFAULT_LEGACY_URL, max_offset_px: float = 1.0
    ):
        self.legacy = LegacySurveyClient(client or HttpClient(), base_url, max_offset_px)

    def fill(self, stamps: Stamps, ra: float, dec: float) -> None:
        """Fetch both cubes at (ra, dec) degrees into ``stamps`` (or record failures[survey])."""
        for survey in LEGACY_SURVEYS:
            try:
                _, cube, _ = self.legacy.cube(survey, ra, dec)
            except RequestFailed as exc:
                stamps.failures[survey] = exc.status
                continue
            setattr(stamps, survey, cube)

    def get(self, target_id: str, ra: float, dec: float) -> Stamps:
        """The GALEX (FUV, NUV) and unWISE (W1, W2) stamps of one target at (ra, dec) degrees ICRS."""
        stamps = Stamps(target_id=target_id)
        self.fill(stamps, ra, dec)
        return stamps
