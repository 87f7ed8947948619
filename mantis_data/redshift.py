"""The redshift label grid of the paper's released model and the class of a galaxy.

The grid is 400 values 0, 0.004, ..., 1.596 (``numpy.linspace(0, 1.6, 401)[:-1]``), spacing 0.004.
"""

from __future__ import annotations

import numpy as np

from .errors import OutOfGridError

Z_MIN = 0.0
Z_MAX = 1.6
N_BINS = 400
GRID: np.ndarray = np.linspace(Z_MIN, Z_MAX, N_BINS + 1)[:-1]
"""The 400 grid values (float64): 0, 0.004, ..., 1.596."""
BIN_WIDTH = (Z_MAX - Z_MIN) / N_BINS
"""Spacing of the grid, 0.004."""


def redshift_class(z, out_of_range: str = "raise") -> np.ndarray:
    """Class index (int64, 0..399) of each redshift: the index of the nearest grid value.

    This is the released training code's rule. The paper's text says ``floor(z / 0.004)``; the two
    differ by one class for z in the upper half of a grid interval (e.g. z = 0.0039 is class 1 here,
    class 0 by floor). Redshifts in [1.598, 1.6) round to 400 and are put in the last class, 399.

    Labels are defined for 0 < z < 1.6. Outside that (z <= 0, z >= 1.6, NaN):
    ``out_of_range="raise"`` raises OutOfGridError, ``"mask"`` returns -1 for those entries.
    """
    z = np.asarray(z, dtype=np.float64)
    bad = ~((z > Z_MIN) & (z < Z_MAX))
    if out_of_range not in ("raise", "mask"):
        raise ValueError(f"out_of_range must be 'raise' or 'mask', not {out_of_range!r}")
    if bad.any() and out_of_range == "raise":
        first = z[bad].ravel()[0]
        raise OutOfGridError(
            f"{int(bad.sum())} redshift(s) outside the label range 0 < z < {Z_MAX} (first: {first!r}); "
            "pass out_of_range='mask' to get class -1 for them"
        )
    classes = np.rint(np.where(bad, 0.0, z) / BIN_WIDTH).astype(np.int64)
    np.minimum(classes, N_BINS - 1, out=classes)
    classes[bad] = -1
    return classes


def in_label_range(z) -> np.ndarray:
    """True where 0 < z < 1.6, the range in which a class label is defined."""
    z = np.asarray(z, dtype=np.float64)
    return (z > Z_MIN) & (z < Z_MAX)
