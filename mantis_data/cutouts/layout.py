"""Where cutout FITS files live in a cutout cache folder (a fetch cache or a local copy).

    <root>/ps1/<prefix>/<target_id>.<band>.fits     one file per Pan-STARRS band (g r i z y), as fitscut returns it
    <root>/galex/<prefix>/<target_id>.fits          Legacy Survey 'galex' layer cube, as fits-cutout returns it
    <root>/unwise/<prefix>/<target_id>.fits         Legacy Survey 'unwise-neo7' layer cube

``prefix`` is the first 3 hex digits of sha1(target_id), so a 4.4M-target cache has ~4096 folders.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mantis_data.bands import SURVEYS


def target_prefix(target_id: str) -> str:
    """The 3-hex-digit folder a target's files live in."""
    return hashlib.sha1(target_id.encode("utf-8")).hexdigest()[:3]


def cutout_path(root: str | Path, survey: str, target_id: str, band: str | None = None) -> Path:
    """Path of one cutout file: per band for Pan-STARRS (``band`` required), one cube otherwise."""
    if survey not in SURVEYS:
        raise ValueError(f"unknown survey {survey!r}")
    folder = Path(root) / survey / target_prefix(target_id)
    if survey == "ps1":
        if band not in SURVEYS["ps1"].bands:
            raise ValueError(f"Pan-STARRS cutouts are per band; band must be one of grizy, not {band!r}")
        return folder / f"{target_id}.{band}.fits"
    if band is not None:
        raise ValueError(f"{survey} cutouts are one cube per target; do not pass a band")
    return folder / f"{target_id}.fits"


def target_paths(root: str | Path, target_id: str) -> dict[str, list[Path]]:
    """All files of one target, per survey (Pan-STARRS in g r i z y order)."""
    return {
        "galex": [cutout_path(root, "galex", target_id)],
        "ps1": [cutout_path(root, "ps1", target_id, b) for b in SURVEYS["ps1"].bands],
        "unwise": [cutout_path(root, "unwise", target_id)],
    }
