"""The per-galaxy photo-z metrics: point and density metrics on full arrays, and the per-galaxy terms.

Holds the metric constants (``NMAD_SCALE``, ``DEFAULT_OUTLIER_THRESHOLD``, ``METRIC_NAMES``), the metrics on
full arrays (``residuals``, ``nmad``, ``bias``, ``outlier_fraction``, ``cde_loss``, ``pit``,
``pit_histogram``, ``ks_uniform``), and ``GalaxyTerms`` / ``galaxy_terms`` (the one chunked pass over the
PMFs) with ``point_metrics``. Definitions and sign conventions: ``mantis_data.metrics``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .redshift import (
    BIN_WIDTH,
    GRID,
    PMF_SUM_ATOL,
    _as_pmf_rows,
    _cdf_rows,
    _pmf_chunks,
    cdf_at,
    density_class,
    in_label_range,
)

NMAD_SCALE = 1.4826
"""Scale turning the median absolute deviation into a Gaussian sigma, as in the paper."""
DEFAULT_OUTLIER_THRESHOLD = 0.05
"""The paper's catastrophic-outlier threshold on |r|."""
METRIC_NAMES = ("nmad", "bias", "outlier_fraction", "cde_loss", "pit_ks")
"""The scalar metrics of a table row, in table order."""


# --------------------------------------------------------------------------------------------------
# Metrics on full arrays
# --------------------------------------------------------------------------------------------------


def residuals(z_true, z_hat) -> np.ndarray:
    """Scaled residuals r = (z_hat - z_true) / (1 + z_true) (dimensionless, float64; positive when z_hat is high)."""
    z_true = np.asarray(z_true, dtype=np.float64)
    z_hat = np.asarray(z_hat, dtype=np.float64)
    return (z_hat - z_true) / (1.0 + z_true)


def nmad(r) -> float:
    """Normalised median absolute deviation 1.4826 * median(|r - median(r)|) (units of r)."""
    r = np.asarray(r, dtype=np.float64)
    if r.size == 0:
        return math.nan
    return float(NMAD_SCALE * np.median(np.abs(r - np.median(r))))


def bias(r) -> float:
    """Mean of the scaled residuals (units of r; positive when z_hat is high on average)."""
    r = np.asarray(r, dtype=np.float64)
    return float(r.mean()) if r.size else math.nan


def outlier_fraction(r, threshold: float = DEFAULT_OUTLIER_THRESHOLD) -> float:
    """Percentage (0-100) of residuals with |r| > threshold (0.05 in the paper, 0.15 elsewhere)."""
    r = np.asarray(r, dtype=np.float64)
    return float(100.0 * np.mean(np.abs(r) > threshold)) if r.size else math.nan


def cde_loss(pmf, z_true, atol: float = PMF_SUM_ATOL) -> float:
    """CDE loss mean(integral p^2 dz) - 2 mean(p(z_true)) of PMFs (n, 400) (units of 1/redshift)."""
    terms = galaxy_terms(z_true, pmf, atol=atol)
    return float(terms.cde_term.mean()) if terms.n else math.nan


def pit(pmf, z_true, atol: float = PMF_SUM_ATOL) -> np.ndarray:
    """Probability integral transform CDF_i(z_true_i) of each PMF (values in [0, 1])."""
    return cdf_at(pmf, z_true, atol=atol)


def pit_histogram(pit_values, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of the PIT values in `bins` equal bins over [0, 1]; flat when calibrated."""
    pit_values = np.asarray(pit_values, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    idx = np.clip((pit_values * bins).astype(np.intp), 0, bins - 1)  # PIT = 1 goes in the last bin
    counts = np.bincount(idx, minlength=bins)
    return counts, edges


def ks_uniform(pit_values) -> float:
    """Kolmogorov-Smirnov distance sup |F_n(x) - x| between the PIT values and U(0, 1) (0-1)."""
    x = np.sort(np.asarray(pit_values, dtype=np.float64))
    n = x.size
    if n == 0:
        return math.nan
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(max(np.max(i / n - x), np.max(x - (i - 1) / n)))


# --------------------------------------------------------------------------------------------------
# Per-galaxy terms: one chunked pass over the PMFs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GalaxyTerms:
    """Per-galaxy numbers every metric is a function of (float64 arrays of length n).

    z_true, z_hat: redshifts; r: scaled residual; pit: CDF at z_true; cde_term: integral p^2 dz - 2 p(z_true)
    (1/redshift); in_label_range: 0 < z_true < 1.6 (outside it the model's density at z_true is 0).
    """

    z_true: np.ndarray
    z_hat: np.ndarray
    r: np.ndarray
    pit: np.ndarray
    cde_term: np.ndarray
    in_label_range: np.ndarray

    @property
    def n(self) -> int:
        """Number of galaxies."""
        return int(self.z_true.size)

    def subset(self, mask) -> GalaxyTerms:
        """The terms of the galaxies where the boolean mask (length n) is True."""
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != self.z_true.shape:
            raise ValueError(
                f"a subpopulation mask must be a boolean array of shape ({self.n},); "
                f"got dtype {mask.dtype}, shape {mask.shape}"
            )
        return GalaxyTerms(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def galaxy_terms(z_true, pmf, atol: float = PMF_SUM_ATOL) -> GalaxyTerms:
    """Point estimate, residual, PIT and CDE term of each galaxy from its PMF (n, 400) and true z (n,)."""
    rows, lead = _as_pmf_rows(pmf)
    if len(lead) != 1:
        raise ValueError(f"pmf must have shape (n, 400); got {tuple(pmf.shape)}")
    z = np.asarray(z_true, dtype=np.float64).reshape(-1)
    if z.shape[0] != rows.shape[0]:
        raise ValueError(f"z_true has {z.shape[0]} values but pmf has {rows.shape[0]} rows")
    if not np.isfinite(z).all():
        raise ValueError(
            f"z_true has {int((~np.isfinite(z)).sum())} non-finite value(s); drop those galaxies"
        )
    n = z.shape[0]
    z_hat = np.empty(n)
    pit_v = np.empty(n)
    cde = np.empty(n)
    k = density_class(z)
    for start, stop, p, s in _pmf_chunks(rows, atol):
        zc, kc = z[start:stop], k[start:stop]
        z_hat[start:stop] = (p @ GRID) / s
        int_p2 = np.einsum("ij,ij->i", p, p) / (s * s * BIN_WIDTH)
        p_true = np.where(kc >= 0, p[np.arange(stop - start), np.maximum(kc, 0)], 0.0) / (s * BIN_WIDTH)
        cde[start:stop] = int_p2 - 2.0 * p_true
        pit_v[start:stop] = _cdf_rows(p, s, zc)
    return GalaxyTerms(z, z_hat, residuals(z, z_hat), pit_v, cde, in_label_range(z))


def point_metrics(
    terms: GalaxyTerms, outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD
) -> dict[str, float]:
    """The five metrics of one population, without uncertainties: {name: value} (see METRIC_NAMES)."""
    if terms.n == 0:
        return dict.fromkeys(METRIC_NAMES, math.nan)
    return {
        "nmad": nmad(terms.r),
        "bias": bias(terms.r),
        "outlier_fraction": outlier_fraction(terms.r, outlier_threshold),
        "cde_loss": float(terms.cde_term.mean()),
        "pit_ks": ks_uniform(terms.pit),
    }
