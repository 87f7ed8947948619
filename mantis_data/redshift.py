"""The redshift label grid of the paper's released model and the class of a galaxy.

The grid is 400 values 0, 0.004, ..., 1.596 (``numpy.linspace(0, 1.6, 401)[:-1]``), spacing 0.004.
"""

from __future__ import annotations

import numpy as np

from .errors import MantisDataError, OutOfGridError

Z_MIN = 0.0
Z_MAX = 1.6
N_BINS = 400
GRID: np.ndarray = np.linspace(Z_MIN, Z_MAX, N_BINS + 1)[:-1]
"""The 400 grid values (float64): 0, 0.004, ..., 1.596."""
BIN_WIDTH = (Z_MAX - Z_MIN) / N_BINS
"""Spacing of the grid, 0.004."""


_TIE_TOLERANCE = 1e-9
"""In class units (1e-9 x 0.004 in redshift): a z this close to the midpoint of two grid values is a tie."""


def redshift_class(z, out_of_range: str = "raise") -> np.ndarray:
    """Class index (int64, 0..399) of each redshift: the index of the nearest grid value.

    This is the released training code's rule (``argmin(|grid - z|)``). A redshift exactly half way
    between two grid values (z = 0.002 + 0.004 k: a quarter of all three-decimal catalogue redshifts, such
    as 0.006 or 0.102) goes to the lower class, as ``argmin`` returns the first of two equal distances;
    "exactly" allows for the float64 rounding of decimal input (within 4e-12 in z). The paper's text says
    ``floor(z / 0.004)``; the two differ by one class for z in the upper half of a grid interval (e.g.
    z = 0.0039 is class 1 here, class 0 by floor). Redshifts in (1.598, 1.6) are nearest to 1.6, which is
    not a grid value, and are put in the last class, 399.

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
    u = np.ceil(np.where(bad, 0.0, z) / BIN_WIDTH - (0.5 + _TIE_TOLERANCE))
    classes = np.asarray(np.clip(u, 0, N_BINS - 1), dtype=np.int64)
    classes[bad] = -1
    return classes


def in_label_range(z) -> np.ndarray:
    """True where 0 < z < 1.6, the range in which a class label is defined."""
    z = np.asarray(z, dtype=np.float64)
    return (z > Z_MIN) & (z < Z_MAX)


# --------------------------------------------------------------------------------------------------
# Probability mass functions over the grid
#
# A model's output is a PMF: 400 non-negative numbers per galaxy, one per grid value, summing to 1.
# Class k holds the redshifts nearest to GRID[k] (the ``redshift_class`` rule), so the PMF is read as a
# piecewise-constant density on cells (GRID[k] - d/2, GRID[k] + d/2] of width d = BIN_WIDTH centred on
# the grid values (a cell's upper edge belongs to it, as a tie goes to the lower class). The cells end
# at 1.598: above it the density is 0 and the CDF is 1, so a galaxy with 1.598 < z < 1.6 (class 399 for
# training) has density 0 at its redshift (``density_class``; the CDE loss's term). With that one reading the PDF integrates to 1, the point estimate sum(PMF * GRID) is
# exactly the mean of the density, the CDF is the cumulative sum reached at each cell's upper edge and
# linear inside the cell, and a galaxy whose PMF is calibrated for its class gets a uniform PIT
# (a delta PMF at the true class gives PIT = (z - lower edge of the cell) / d, anywhere in [0, 1)).
# All functions take arrays of shape (..., 400), any float dtype (float32 is fine; sums are done in
# float64), and rescale each PMF by its own sum, so a float32 softmax that sums to 1 - 1e-7 is exact.
# --------------------------------------------------------------------------------------------------

CELL_EDGES: np.ndarray = np.linspace(Z_MIN - BIN_WIDTH / 2, Z_MAX - BIN_WIDTH / 2, N_BINS + 1)
"""The 401 edges of the cells centred on the grid values (float64): -0.002, 0.002, ..., 1.598."""

PMF_SUM_ATOL = 1e-3
"""Default tolerance on |sum(PMF) - 1| accepted by the PMF functions (each PMF is then rescaled)."""

_CHUNK_BYTES = 64 * 2**20  # float64 working set per chunk of rows: bounded memory on millions of PMFs


class InvalidPMFError(MantisDataError, ValueError):
    """An array given as probability mass functions over the redshift grid is malformed."""


def _as_pmf_rows(pmf) -> tuple[np.ndarray, tuple[int, ...]]:
    """(rows, leading shape): the PMF array as a (n, 400) view, after checking its shape and dtype."""
    if not hasattr(pmf, "shape") or not hasattr(pmf, "dtype"):
        pmf = np.asarray(pmf)
    if pmf.ndim < 1 or pmf.shape[-1] != N_BINS:
        raise InvalidPMFError(
            f"a PMF array must have shape (..., {N_BINS}): one probability per grid value "
            f"0, {BIN_WIDTH:g}, ..., {GRID[-1]:g}; got shape {tuple(pmf.shape)}"
        )
    if not (np.issubdtype(pmf.dtype, np.floating) or np.issubdtype(pmf.dtype, np.integer)):
        raise InvalidPMFError(f"a PMF array must be numeric; got dtype {pmf.dtype}")
    lead = tuple(pmf.shape[:-1])
    return pmf.reshape(-1, N_BINS), lead


def _chunk_rows(n_rows: int) -> int:
    """Rows per chunk so that one float64 chunk stays near _CHUNK_BYTES."""
    return max(1, min(n_rows, _CHUNK_BYTES // (N_BINS * 8)))


def _pmf_chunks(rows: np.ndarray, atol: float):
    """Yield (start, stop, p, s): float64 chunks of the (n, 400) PMF rows and their sums, validated."""
    n = rows.shape[0]
    step = _chunk_rows(n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        p = np.asarray(rows[start:stop], dtype=np.float64)
        s = p.sum(axis=1)
        _check_chunk(p, s, start, atol)
        yield start, stop, p, s


def _check_chunk(p: np.ndarray, s: np.ndarray, start: int, atol: float) -> None:
    """Raise InvalidPMFError naming the first bad row of a chunk (NaN/inf, negative, sum far from 1)."""
    if p.size == 0:
        return
    bad_sum = ~(np.abs(s - 1.0) <= atol)  # also catches NaN and inf anywhere in the row
    if bad_sum.any():
        i = int(np.flatnonzero(bad_sum)[0])
        raise InvalidPMFError(
            f"PMF row {start + i} sums to {float(s[i])!r}, not 1 (tolerance {atol:g}); "
            f"{int(bad_sum.sum())} row(s) in rows {start}..{start + len(s) - 1} are affected. "
            "Pass probabilities (softmax of the logits), not logits, or normalise with "
            "pmf / pmf.sum(axis=-1, keepdims=True); rows with NaN or inf must be removed"
        )
    if p.min() < 0:
        i = int(np.flatnonzero((p < 0).any(axis=1))[0])
        raise InvalidPMFError(
            f"PMF row {start + i} has negative probabilities (min {float(p[i].min())!r}); "
            "pass probabilities (softmax of the logits), not logits"
        )


def validate_pmf(pmf, atol: float = PMF_SUM_ATOL) -> np.ndarray:
    """Check PMFs over the grid (shape (..., 400), finite, >= 0, each summing to 1 +- atol); return them."""
    rows, _ = _as_pmf_rows(pmf)
    for _ in _pmf_chunks(rows, atol):
        pass
    return pmf if isinstance(pmf, np.ndarray) else np.asarray(pmf)


def pmf_to_pdf(pmf, atol: float = PMF_SUM_ATOL) -> np.ndarray:
    """Probability density (per unit redshift) on each grid cell: PMF / (sum * 0.004), integrating to 1."""
    rows, lead = _as_pmf_rows(pmf)
    dtype = np.result_type(rows.dtype, np.float32)
    out = np.empty(rows.shape, dtype=dtype)
    for start, stop, p, s in _pmf_chunks(rows, atol):
        out[start:stop] = p / (s[:, None] * BIN_WIDTH)
    return out.reshape(*lead, N_BINS)


def point_estimate(pmf, atol: float = PMF_SUM_ATOL) -> np.ndarray:
    """Point redshift of each PMF: its expectation sum(PMF * GRID) (float64, redshift units)."""
    rows, lead = _as_pmf_rows(pmf)
    out = np.empty(rows.shape[0], dtype=np.float64)
    for start, stop, p, s in _pmf_chunks(rows, atol):
        out[start:stop] = (p @ GRID) / s
    return out.reshape(lead)


def _cdf_rows(p: np.ndarray, s: np.ndarray, z: np.ndarray) -> np.ndarray:
    """CDF at z of float64 PMF rows p with sums s (the cell reading described above)."""
    u = (z - CELL_EDGES[0]) / BIN_WIDTH  # position in cells from the lower edge of cell 0
    u_safe = np.nan_to_num(u, nan=0.0, posinf=N_BINS, neginf=-1.0)
    i = np.clip(np.floor(u_safe), 0, N_BINS - 1).astype(np.intp)  # the cell holding z (or the end one)
    frac = np.clip(u - i, 0.0, 1.0)
    below = np.cumsum(p, axis=1)  # mass up to the upper edge of each cell
    rows = np.arange(p.shape[0])
    pi = p[rows, i]
    c = (below[rows, i] - pi + frac * pi) / s
    return np.where(np.isnan(z), np.nan, np.minimum(c, 1.0))


def cdf_at(pmf, z, atol: float = PMF_SUM_ATOL) -> np.ndarray:
    """CDF of each PMF at redshift z (broadcast over the leading shape): cumulative sum, linear in a cell."""
    rows, lead = _as_pmf_rows(pmf)
    z = np.broadcast_to(np.asarray(z, dtype=np.float64), lead).reshape(-1)
    out = np.empty(rows.shape[0], dtype=np.float64)
    for start, stop, p, s in _pmf_chunks(rows, atol):
        out[start:stop] = _cdf_rows(p, s, z[start:stop])
    return out.reshape(lead)


def density_class(z) -> np.ndarray:
    """Cell (int64, 0..399) whose density holds z, the derivative of ``cdf_at``; -1 where the density is 0.

    Equal to ``redshift_class`` on 0 < z <= 1.598; -1 for z outside the label range 0 < z < 1.6 and for
    1.598 < z < 1.6, above the last cell, where the CDF has already reached 1.
    """
    z = np.asarray(z, dtype=np.float64)
    k = redshift_class(z, out_of_range="mask")
    above = z / BIN_WIDTH > (N_BINS - 0.5) + _TIE_TOLERANCE
    return np.where(above, -1, k)


def pdf_at(pmf, z, atol: float = PMF_SUM_ATOL) -> np.ndarray:
    """Density (per unit redshift) of each PMF at z: PMF[density_class(z)] / 0.004; 0 where z has no cell."""
    rows, lead = _as_pmf_rows(pmf)
    z = np.broadcast_to(np.asarray(z, dtype=np.float64), lead).reshape(-1)
    k = density_class(z)
    out = np.empty(rows.shape[0], dtype=np.float64)
    for start, stop, p, s in _pmf_chunks(rows, atol):
        kk = k[start:stop]
        dens = p[np.arange(stop - start), np.maximum(kk, 0)] / (s * BIN_WIDTH)
        out[start:stop] = np.where(kk >= 0, dens, 0.0)
    return out.reshape(lead)


def _quantile_rows(p: np.ndarray, s: np.ndarray, q: float) -> np.ndarray:
    """Smallest z with CDF(z) = q for float64 PMF rows p with sums s, 0 < q < 1 (inverse of _cdf_rows)."""
    below = np.cumsum(p, axis=1)
    target = q * s
    j = np.minimum((below < target[:, None]).sum(axis=1), N_BINS - 1)  # first cell whose upper CDF >= q
    rows = np.arange(p.shape[0])
    pj = p[rows, j]
    start = below[rows, j] - pj
    frac = np.clip(np.divide(target - start, pj, out=np.zeros_like(pj), where=pj > 0), 0.0, 1.0)
    return CELL_EDGES[j] + frac * BIN_WIDTH


def credible_interval(pmf, level: float = 0.68, atol: float = PMF_SUM_ATOL) -> tuple[np.ndarray, np.ndarray]:
    """Central credible interval (lo, hi) in redshift holding `level` of each PMF's mass, (1-level)/2 each side."""
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(
            f"level must be a probability strictly between 0 and 1, e.g. 0.68 or 0.9; got {level}"
        )
    rows, lead = _as_pmf_rows(pmf)
    lo = np.empty(rows.shape[0], dtype=np.float64)
    hi = np.empty(rows.shape[0], dtype=np.float64)
    for start, stop, p, s in _pmf_chunks(rows, atol):
        lo[start:stop] = _quantile_rows(p, s, (1.0 - level) / 2.0)
        hi[start:stop] = _quantile_rows(p, s, (1.0 + level) / 2.0)
    return lo.reshape(lead), hi.reshape(lead)
