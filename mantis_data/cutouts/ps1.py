"""Pan-STARRS DR2 3pi stack cutouts from ps1images.stsci.edu.

Per target: one ``ps1filenames.py`` request (ra, dec, filters=grizy, type=stack: asked explicitly, as the
released code does, rather than relying on the service's default) lists the stack file of each band
(a whitespace table ``projcell subcell ra dec filter mjd type filename shortname badflag``; an empty table
means no Pan-STARRS coverage), then one ``fitscut.cgi`` request per band (red=<filename>, ra, dec,
size=170, format=fits). Each cutout is validated before it is used or cached: it parses as FITS (not an
HTML error page), is (170, 170), has EXPTIME, and its WCS centre lies within a pixel of the target.
fitscut returns linear flux; a response still carrying BSOFTEN/BOFFSET (the asinh-compressed skycell
form) is linearised by ``mantis_data.cutouts.fits.read_ps1_cutout``, which also gives the band's AB zero
point 25 + 2.5 log10(EXPTIME).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mantis_data.bands import SURVEYS

from .base import Stamps
from .client import (
    HttpClient,
    InvalidResponse,
    RequestFailed,
    check_base_url,
    check_centre,
    format_coordinate,
)
from .fits import CutoutError, read_ps1_cutout

DEFAULT_PS1_URL = "https://ps1images.stsci.edu/cgi-bin"
"""Base URL of the Pan-STARRS image service (``ps1filenames.py`` and ``fitscut.cgi`` live under it)."""

FILENAMES_SCRIPT = "ps1filenames.py"
FITSCUT_SCRIPT = "fitscut.cgi"
FILENAMES_COLUMNS = ("projcell", "subcell", "ra", "dec", "filter", "mjd", "type", "filename", "shortname", "badflag")
"""Header of the ps1filenames.py table."""

PS1_BANDS = SURVEYS["ps1"].bands
IMAGE_TYPE = "stack"
"""The Pan-STARRS image type requested from ps1filenames.py (``type=stack``): the 3pi stacks."""


def parse_filenames(body: bytes) -> dict[str, str]:
    """The stack filename per band from a ps1filenames.py response ({} when it lists none: no coverage)."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidResponse("unreadable: ps1filenames reply is not ASCII text") from None
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines or tuple(lines[0][: len(FILENAMES_COLUMNS)]) != FILENAMES_COLUMNS:
        head = text.lstrip()[:60].lower()
        what = "an HTML page" if head.startswith(("<!doctype", "<html")) or "<html" in head else repr(text[:40])
        raise InvalidResponse(f"unreadable: ps1filenames reply is not the file table ({what})")
    header = lines[0]
    i_filter, i_name, i_type = header.index("filter"), header.index("filename"), header.index("type")
    out: dict[str, str] = {}
    for row in lines[1:]:
        if len(row) != len(header):
            raise InvalidResponse(f"unreadable: ps1filenames row with {len(row)} fields, expected {len(header)}")
        if row[i_type] == IMAGE_TYPE:  # a warp or other image type is never used
            out.setdefault(row[i_filter], row[i_name])
    return out


@dataclass
class PS1Result:
    """One target's Pan-STARRS fetch: status 'ok' | 'no_coverage' | 'failed: ...', raw FITS bytes per band."""

    status: str
    attempts: int = 0
    raw: dict[str, bytes] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    zero_points: dict[str, float] = field(default_factory=dict)
    failed_bands: dict[str, str] = field(default_factory=dict)


class PS1Client:
    """Requests and validates Pan-STARRS cutouts through an HttpClient (base URL configurable)."""

    def __init__(self, client: HttpClient, base_url: str = DEFAULT_PS1_URL, max_offset_px: float = 1.0):
        self.client = client
        self.base_url = check_base_url(base_url, "the Pan-STARRS URL (--ps1-url)")
        self.max_offset_px = float(max_offset_px)
        self.size = SURVEYS["ps1"].cutout_size

    def filenames(self, ra: float, dec: float) -> tuple[dict[str, str], int]:
        """(stack filename per band, attempts) at (ra, dec) degrees; {} where Pan-STARRS has no coverage."""
        params = {
            "ra": format_coordinate(ra),
            "dec": format_coordinate(dec),
            "filters": "".join(PS1_BANDS),
            "type": IMAGE_TYPE,
        }
        names, attempts = self.client.get(
            f"{self.base_url}/{FILENAMES_SCRIPT}", params, lambda body, headers: parse_filenames(body)
        )
        return names, attempts

    def validate(self, body: bytes, ra: float, dec: float, name: str = "<response>") -> tuple[np.ndarray, float]:
        """(image float32 (170, 170) linear counts, AB zero point) of a fitscut body, or InvalidResponse."""
        try:
            img, zp, header = read_ps1_cutout(body, name=name, size=self.size)
        except CutoutError as exc:
            raise InvalidResponse(exc.reason) from None
        check_centre(header, ra, dec, self.max_offset_px)
        return img, zp

    def cutout(self, filename: str, ra: float, dec: float) -> tuple[bytes, np.ndarray, float, int]:
        """(raw FITS bytes, image, AB zero point, attempts) of one band's validated fitscut cutout."""
        params = {
            "red": filename,
            "ra": format_coordinate(ra),
            "dec": format_coordinate(dec),
            "size": str(self.size),
            "format": "fits",
        }

        def check(body: bytes, headers) -> tuple[bytes, np.ndarray, float]:
            img, zp = self.validate(body, ra, dec)
            return body, img, zp

        (body, img, zp), attempts = self.client.get(f"{self.base_url}/{FITSCUT_SCRIPT}", params, check)
        return body, img, zp, attempts

    def fetch(self, ra: float, dec: float, bands: tuple[str, ...] = PS1_BANDS, on_band=None) -> PS1Result:
        """Fetch ``bands`` at (ra, dec) degrees; ``on_band(band, raw_bytes)`` is called as each band arrives.

        A band that fails after its retries leaves the others fetched and makes the status
        'failed: <reason> after <n> attempts [<bands>]'.
        """
        result = PS1Result(status="ok")
        try:
            names, result.attempts = self.filenames(ra, dec)
        except RequestFailed as exc:
            result.attempts = exc.attempts
            result.status = f"{exc.status} [filenames]"
            return result
        if not names:
            result.status = "no_coverage"
            return result
        first: RequestFailed | None = None
        for b in bands:
            if b not in names:
                result.failed_bands[b] = "no stack file listed"
                continue
            try:
                raw, img, zp, n = self.cutout(names[b], ra, dec)
            except RequestFailed as exc:
                result.attempts += exc.attempts
                result.failed_bands[b] = exc.status
                first = first or exc
                continue
            result.attempts += n
            result.raw[b], result.images[b], result.zero_points[b] = raw, img, zp
            if on_band is not None:
                on_band(b, raw)
        if result.failed_bands:
            bands_txt = ",".join(result.failed_bands)
            result.status = f"{first.status} [{bands_txt}]" if first else f"failed: no stack file listed [{bands_txt}]"
        return result


class PS1Source:
    """Cutout source for Pan-STARRS only: ``get`` fills ``Stamps.ps1`` and ``ps1_zp`` (other surveys left None)."""

    def __init__(self, client: HttpClient | None = None, base_url: str = DEFAULT_PS1_URL, max_offset_px: float = 1.0):
        self.ps1 = PS1Client(client or HttpClient(), base_url, max_offset_px)

    def fill(self, stamps: Stamps, ra: float, dec: float) -> None:
        """Fetch the Pan-STARRS cube at (ra, dec) degrees into ``stamps`` (or record failures['ps1'])."""
        result = self.ps1.fetch(ra, dec)
        if result.status != "ok":
            stamps.failures["ps1"] = result.status
            return
        stamps.ps1 = np.stack([result.images[b] for b in PS1_BANDS])
        stamps.ps1_zp = np.array([result.zero_points[b] for b in PS1_BANDS], dtype=np.float64)

    def get(self, target_id: str, ra: float, dec: float) -> Stamps:
        """The Pan-STARRS stamp of one target at (ra, dec) degrees ICRS (g r i z y, linear counts)."""
        stamps = Stamps(target_id=target_id)
        self.fill(stamps, ra, dec)
        return stamps
