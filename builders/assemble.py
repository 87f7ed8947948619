"""Target + cutouts (+ dust) -> one release sample, or a recorded rejection with a reason.

Quality rules (the paper's, DESIGN.md "Assemble"):
- a survey whose cutout failed (missing, unreadable, wrong shape) rejects the target: ``<survey>_<failure>``;
- Pan-STARRS: rejected when any band has more than 1% NaN pixels (``ps1_nan_fraction:<band>``),
  otherwise NaN -> 0 (the fraction per band is kept in ``ps1_nan_frac``);
- GALEX and unWISE: the same NaN rule (the paper saw none); GALEX pixels that are exactly 0 mean
  no coverage: recorded in ``galex_coverage``, never a rejection;
- unWISE all zero is no data: ``unwise_empty``;
- a pixel that is +-inf or beyond the survey's physical limit (mantis_data.bands.PIXEL_LIMITS) is
  corruption, not sky: ``<survey>_bad_values: <what> [<band>]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mantis_data.bands import PIXEL_LIMITS, SURVEYS
from mantis_data.cutouts.base import Stamps
from mantis_data.schema import IMAGE_FIELDS, IMAGE_SHAPES

MAX_NAN_FRACTION = 0.01
"""The paper's rule: reject a Pan-STARRS cutout with more than 1% NaN pixels in any band."""


@dataclass(frozen=True)
class Target:
    """One row of targets.parquet, with its split assignment."""

    target_id: str
    survey: str
    survey_objid: str
    ra: float
    dec: float
    z: float
    z_conflict: bool
    split: str
    chunk: int
    ebv_csfd: float | None = None
    ebv_planck: float | None = None


def nan_fractions(cube: np.ndarray) -> np.ndarray:
    """Fraction of NaN pixels per band of a (bands, ny, nx) cube (float32)."""
    return np.isnan(cube).reshape(cube.shape[0], -1).mean(axis=1).astype(np.float32)


def bad_values(survey: str, cube: np.ndarray) -> str | None:
    """'<what> [<band>]' for the first band holding +-inf or a pixel beyond PIXEL_LIMITS[survey], else None."""
    limit = PIXEL_LIMITS[survey]
    with np.errstate(invalid="ignore"):
        peak = np.nanmax(np.abs(cube).reshape(cube.shape[0], -1), axis=1, initial=0.0)
    for k, value in enumerate(peak):
        if not value <= limit:
            what = "inf" if np.isinf(value) else f"|pixel| {value:.3g} > {limit:.0e}"
            return f"{what} [{SURVEYS[survey].bands[k]}]"
    return None


def check_survey(survey: str, cube: np.ndarray | None, failure: str | None) -> tuple[np.ndarray | None, np.ndarray, str | None]:
    """Quality-check one survey cube: (cleaned cube or None, NaN fraction per band, reject reason or None)."""
    n_bands = len(SURVEYS[survey].bands)
    if failure is not None or cube is None:
        return None, np.full(n_bands, np.nan, np.float32), f"{survey}_{failure or 'missing'}"
    if cube.shape != IMAGE_SHAPES[survey]:
        return None, np.full(n_bands, np.nan, np.float32), f"{survey}_bad_shape: {cube.shape}"
    fractions = nan_fractions(cube)
    worst = int(np.argmax(fractions))
    if fractions[worst] > MAX_NAN_FRACTION:
        band = SURVEYS[survey].bands[worst]
        return None, fractions, f"{survey}_nan_fraction:{band}"
    bad = bad_values(survey, cube)
    if bad is not None:
        return None, fractions, f"{survey}_bad_values: {bad}"
    clean = np.where(np.isnan(cube), np.float32(0), cube).astype(np.float32, copy=False)
    if survey == "unwise" and not clean.any():
        return None, fractions, "unwise_empty"
    return clean, fractions, None


def galex_coverage(cube: np.ndarray) -> float:
    """Fraction of GALEX pixels where any band is non-zero (0.0 = no GALEX coverage)."""
    return float((cube != 0).any(axis=0).mean())


def assemble(target: Target, stamps: Stamps) -> tuple[dict | None, str | None]:
    """Build one sample from a target and its stamps: (sample, None) or (None, reject reason)."""
    sample: dict = {}
    ps1_fractions = np.full(len(SURVEYS["ps1"].bands), np.nan, np.float32)
    for survey in IMAGE_FIELDS:
        clean, fractions, why = check_survey(survey, getattr(stamps, survey), stamps.failures.get(survey))
        if why is not None:
            return None, why
        sample[survey] = clean
        if survey == "ps1":
            ps1_fractions = fractions
    zp = stamps.ps1_zp if stamps.ps1_zp is not None else np.full(len(SURVEYS["ps1"].bands), np.nan)
    sample.update(
        target_id=target.target_id,
        z=float(target.z),
        ra=float(target.ra),
        dec=float(target.dec),
        survey=target.survey,
        survey_objid=str(target.survey_objid),
        z_conflict=bool(target.z_conflict),
        ebv_csfd=target.ebv_csfd,
        ebv_planck=target.ebv_planck,
        ps1_nan_frac=ps1_fractions,
        ps1_zp=np.asarray(zp, dtype=np.float32),
        galex_coverage=np.float32(galex_coverage(sample["galex"])),
        split=target.split,
        chunk=int(target.chunk),
    )
    return sample, None
