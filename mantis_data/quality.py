"""The release's quality rules for one target's cutouts, shared by the builders and forced photo-z.

- a survey whose cutout failed (missing, unreadable, wrong shape) is rejected: ``<survey>_<failure>``;
- Pan-STARRS: rejected when any band has more than 1% NaN pixels (``ps1_nan_fraction:<band>``),
  otherwise NaN -> 0;
- GALEX and unWISE: the same NaN rule; GALEX pixels that are exactly 0 mean no coverage (recorded,
  never a rejection);
- unWISE all zero is no data: ``unwise_empty``.
Infinite pixels count as NaN.
"""

from __future__ import annotations

import numpy as np

from mantis_data.bands import SURVEYS
from mantis_data.schema import IMAGE_SHAPES

MAX_NAN_FRACTION = 0.01
"""The paper's rule: reject a Pan-STARRS cutout with more than 1% NaN pixels in any band."""


def nan_fractions(cube: np.ndarray) -> np.ndarray:
    """Fraction of non-finite pixels per band of a (bands, ny, nx) cube (float32)."""
    return (~np.isfinite(cube)).reshape(cube.shape[0], -1).mean(axis=1).astype(np.float32)


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
    clean = np.where(np.isfinite(cube), cube, np.float32(0)).astype(np.float32, copy=False)
    if survey == "unwise" and not clean.any():
        return None, fractions, "unwise_empty"
    return clean, fractions, None


def galex_coverage(cube: np.ndarray) -> float:
    """Fraction of GALEX pixels where any band is non-zero (0.0 = no GALEX coverage)."""
    return float((cube != 0).any(axis=0).mean())


__all__ = ["MAX_NAN_FRACTION", "check_survey", "galex_coverage", "nan_fractions"]
