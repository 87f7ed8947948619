"""The release's quality rules for one target's cutouts, shared by the builders and forced photo-z.

- a survey whose cutout failed (missing, unreadable, wrong shape) is rejected: ``<survey>_<failure>``;
- Pan-STARRS: rejected when any band has more than 1% NaN pixels (``ps1_nan_fraction:<band>``),
  otherwise NaN -> 0;
- GALEX and unWISE: the same NaN rule; GALEX pixels that are exactly 0 mean no coverage (recorded,
  never a rejection);
- unWISE all zero is no data: ``unwise_empty``;
- a band holding +-inf, or a pixel beyond the survey's physical limit (``bands.PIXEL_LIMITS``), is
  rejected: ``<survey>_bad_values: <what> [<band>]``.
"""

from __future__ import annotations

import numpy as np

from mantis_data.bands import PIXEL_LIMITS, SURVEYS
from mantis_data.schema import IMAGE_SHAPES

MAX_NAN_FRACTION = 0.01
"""The paper's rule: reject a Pan-STARRS cutout with more than 1% NaN pixels in any band."""


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


__all__ = ["MAX_NAN_FRACTION", "bad_values", "check_survey", "galex_coverage", "nan_fractions"]
