"""A cutout source reading FITS files from a local cutout cache folder (mantis_data.cutouts.layout).

When the folder is a fetch cache (it holds ``fetch_manifest.jsonl``, see mantis_data.cutouts.fetch), a survey
whose files are missing reports the fetch's own reason instead of 'missing': 'no_coverage' or
'failed: http 503 after 5 attempts' (assemble turns it into the audit's 'ps1_no_coverage', ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mantis_data.bands import SURVEYS
from mantis_data.errors import InputDataError

from .base import Stamps
from .fits import DEFAULT_MAX_OFFSET_PX, CutoutError, position_failure, read_legacy_cube, read_ps1_cutout
from .layout import cutout_path, target_paths


def _read_bytes(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


class LocalFitsSource:
    """Stamps of a target from ``<root>/<survey>/<prefix>/<target_id>[.<band>].fits`` files.

    Per survey, a missing file gives failures[survey] = 'missing' ('missing: g,r' when only some PS1 bands
    are), an unparseable one 'unreadable: <why>', a wrong shape 'bad_shape: <shape>' (PS1 reasons end with
    the band in brackets). Images are float32 with NaN as stored. Every file's position is checked by
    its WCS (mantis_data.cutouts.fits.position_failure, the same check the HTTP clients make): a file whose
    WCS puts (ra, dec) farther than ``max_offset_px`` pixels (default 1) from the image centre fails as
    'wrong_position: <px> px', one without a WCS as 'no_wcs'. ``max_offset_px=None`` turns the check off.
    """

    def __init__(
        self, root: str | Path, max_offset_px: float | None = DEFAULT_MAX_OFFSET_PX, use_fetch_manifest: bool = True
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputDataError(
                f"cutout folder {self.root} does not exist; fetch cutouts first or pass the folder that holds "
                "the ps1/, galex/ and unwise/ subfolders"
            )
        self.max_offset_px = max_offset_px
        self.use_fetch_manifest = use_fetch_manifest
        self._fetch_status: dict[str, dict[str, str]] | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fetch_status"] = None  # each process reads the manifest once, lazily, instead of pickling it
        return state

    def _fetch_reason(self, target_id: str, survey: str) -> str | None:
        """The fetch manifest's status of a survey that did not end 'ok' (None without a manifest)."""
        if not self.use_fetch_manifest:
            return None
        if self._fetch_status is None:
            from .fetch_manifest import fetch_failures, manifest_path

            self._fetch_status = fetch_failures(self.root) if manifest_path(self.root).exists() else {}
        return self._fetch_status.get(target_id, {}).get(survey)

    def _explain_missing(self, stamps: Stamps, target_id: str) -> None:
        for survey, why in list(stamps.failures.items()):
            if why.startswith("missing"):
                reason = self._fetch_reason(target_id, survey)
                if reason is not None:
                    stamps.failures[survey] = reason

    def _check_position(self, header, ra: float, dec: float) -> str | None:
        return position_failure(header, ra, dec, self.max_offset_px)

    def _ps1(self, stamps: Stamps, target_id: str, ra: float, dec: float) -> None:
        bands = SURVEYS["ps1"].bands
        blobs = {}
        for b in bands:
            path = cutout_path(self.root, "ps1", target_id, b)
            try:
                blobs[b] = (path, _read_bytes(path))
            except OSError as e:
                stamps.failures["ps1"] = f"unreadable: {e.strerror or e} [{b}]"
                return
        missing = [b for b in bands if blobs[b][1] is None]
        if missing:
            stamps.failures["ps1"] = "missing" if len(missing) == len(bands) else f"missing: {','.join(missing)}"
            return
        images, zps = [], []
        for b in bands:
            path, data = blobs[b]
            try:
                img, zp, header = read_ps1_cutout(data, name=str(path))
            except CutoutError as e:
                stamps.failures["ps1"] = f"{e.reason} [{b}]"
                return
            bad = self._check_position(header, ra, dec)
            if bad:
                stamps.failures["ps1"] = f"{bad} [{b}]"
                return
            images.append(img)
            zps.append(zp)
        stamps.ps1 = np.stack(images)
        stamps.ps1_zp = np.array(zps, dtype=np.float64)

    def _legacy(self, stamps: Stamps, survey: str, target_id: str, ra: float, dec: float) -> None:
        path = cutout_path(self.root, survey, target_id)
        try:
            data = _read_bytes(path)
        except OSError as e:
            stamps.failures[survey] = f"unreadable: {e.strerror or e}"
            return
        if data is None:
            stamps.failures[survey] = "missing"
            return
        try:
            cube, header = read_legacy_cube(data, survey, name=str(path))
        except CutoutError as e:
            stamps.failures[survey] = e.reason
            return
        bad = self._check_position(header, ra, dec)
        if bad:
            stamps.failures[survey] = bad
            return
        setattr(stamps, survey, cube)

    def input_files(self, target_id: str) -> list[Path]:
        """Absolute paths of every file ``get`` reads for one target (a shard's fingerprint covers them)."""
        root = self.root.resolve()
        return [p for paths in target_paths(root, target_id).values() for p in paths]

    def get(self, target_id: str, ra: float, dec: float) -> Stamps:
        """The stamps of one target at (ra, dec) in degrees ICRS, read from the cache folder."""
        stamps = Stamps(target_id=target_id)
        self._legacy(stamps, "galex", target_id, ra, dec)
        self._ps1(stamps, target_id, ra, dec)
        self._legacy(stamps, "unwise", target_id, ra, dec)
        if stamps.failures:
            self._explain_missing(stamps, target_id)
        return stamps
