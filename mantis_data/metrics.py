"""Photometric-redshift metrics as the paper defines them (Sec. 6.1), with bootstrap uncertainties.

Point metrics use the scaled residuals r = (z_hat - z) / (1 + z), positive when the model overestimates,
with z_hat the expectation of the PMF (``redshift.point_estimate``). That is the sign of the code that
produced the paper's tables (pnnl/MantisShrimp ``training.py``) and of the photo-z community (LSST DESC
qp/RAIL, the B22 PS1 x WISE catalog); the paper's text writes r = (z - z_hat) / (1 + z), the opposite sign,
but its tables were computed with this one. Only the bias depends on the sign; NMAD and eta do not.

- NMAD = 1.4826 * median(|r - median(r)|)
- bias = mean(r)
- eta = percentage of galaxies with |r| > threshold (0.05 in the paper; 0.15 is the other convention)

Density metrics read each PMF as the piecewise-constant density of ``mantis_data.redshift``:

- CDE loss (Izbicki & Lee 2016) = mean_i integral p_i(z)^2 dz - 2 mean_i p_i(z_i), where p_i(z_i) is the
  density of the true class (the grid value nearest z_i, ``redshift_class``, ties to the lower class) and
  0 for a z_i where the CDF is flat: outside the label range 0 < z < 1.6, and for 1.598 < z < 1.6, above
  the last cell (``redshift.density_class``). A uniform PMF gives -1 / (400 * 0.004) = -0.625; a one-bin PMF at the true
  class gives -1 / 0.004 = -250.
- PIT = CDF_i(z_i); its histogram should be flat; ``ks_uniform`` is its KS distance from uniform.

Every metric is a function of per-galaxy numbers (r, |r| > threshold, the CDE term, the PIT), computed
once in one chunked pass over the PMFs (``galaxy_terms``). The bootstrap then resamples galaxies
(B multinomial resamples of size n, drawn as index counts, one resample's counts in memory at a time):
means are count-weighted sums, the medians of the NMAD are read off cumulative counts over the residuals
sorted once, and the KS distance off cumulative counts over the PIT sorted once. The replicates are the
statistics of the resampled sets exactly (to rounding), at O(n) per resample with no n log n sort.
Uncertainties are the standard deviation of the replicates, reported as the paper does: ``2.438(4)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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

_INF_BITS = np.array(np.inf).view(np.int64).item()


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


# --------------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------------


def bootstrap(
    statistic: Callable[..., float], *arrays, B: int = 1000, seed: int = 0, max_elements: int = 2**24
) -> np.ndarray:
    """B bootstrap replicates of statistic(*resampled arrays) (any statistic; index batches of bounded size)."""
    if not arrays:
        raise ValueError("bootstrap needs at least one array to resample")
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("all arrays given to bootstrap must have the same length")
    out = np.full(int(B), np.nan)
    if n == 0:
        return out
    rng = np.random.default_rng(seed)
    per_batch = max(1, int(max_elements) // n)
    for start in range(0, int(B), per_batch):
        idx = rng.integers(0, n, size=(min(per_batch, int(B) - start), n))
        for j, row in enumerate(idx):
            out[start + j] = statistic(*(a[row] for a in arrays))
    return out


class _Resampler:
    """The per-galaxy terms of one population, sorted once, and the metrics of resamples given as counts."""

    def __init__(self, terms: GalaxyTerms, outlier_threshold: float):
        order = np.argsort(terms.r, kind="stable")
        self.n = n = terms.n
        self.r = terms.r[order]
        # bias and CDE loss: count-weighted sums, as rows of a matrix applied to the counts
        self.mean_terms = np.stack([self.r, terms.cde_term[order]])
        # eta: the outliers are the prefix r < -threshold and the suffix r > threshold of the sorted r
        self.n_low = int(np.searchsorted(self.r, -outlier_threshold, side="left"))
        self.n_high = int(np.searchsorted(self.r, outlier_threshold, side="right"))
        pit_in_r_order = terms.pit[order]
        self.pit_order = np.argsort(pit_in_r_order, kind="stable")
        self.n_pit = n * pit_in_r_order[self.pit_order]  # n * sorted PIT
        self.k_lo, self.k_hi = (n + 1) // 2, n // 2 + 1  # 1-based ranks averaged by the median
        # reused buffers for the KS of one resample: no allocation (and no page faults) per resample
        self.count_dtype = np.int32 if n < 2**31 else np.int64  # counts and their sums are <= n
        self._c = np.empty(n, dtype=self.count_dtype)
        self._cum = np.empty(n, dtype=self.count_dtype)
        self._diff = np.empty(n)

    def replicates(self, counts: np.ndarray, cum: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Metrics of b resamples given as counts (b, n) per galaxy (in r-sorted order), each summing to n.

        cum is an optional int64 buffer of at least b * n + 1 values.
        """
        counts = np.asarray(counts, dtype=self.count_dtype)
        b, n = counts.shape
        sums = np.stack([self.mean_terms @ counts[j] for j in range(b)], axis=1)
        # cumulative counts of all rows in one run: row j's cumulative count at position i (number of
        # resampled values among r[:i]) is cum[j * n + i] - j * n, since every row sums to n
        if cum is None or cum.size < b * n + 1:
            cum = np.empty(b * n + 1, dtype=np.int64)
        cum = cum[: b * n + 1]
        cum[0] = 0
        np.cumsum(counts.reshape(-1), out=cum[1:])
        base = np.arange(b, dtype=np.int64) * n
        rows_base = np.concatenate([base, base])
        k = np.concatenate([np.full(b, self.k_lo), np.full(b, self.k_hi)])
        # median of each resample: the k-th resampled value is r[i] for the first i with cum >= k
        pos = np.searchsorted(cum, rows_base + k, side="left") - rows_base - 1
        med_parts = self.r[pos]
        med = 0.5 * (med_parts[:b] + med_parts[b:])
        m = np.concatenate([med, med])
        dev = self._kth_deviation(cum, rows_base, m, k)
        ks = np.array([self._ks(counts[j]) for j in range(b)])
        n_out = (cum[base + self.n_low] - base) + (n - (cum[base + self.n_high] - base))
        return {
            "nmad": NMAD_SCALE * 0.5 * (dev[:b] + dev[b:]),
            "bias": sums[0] / n,
            "outlier_fraction": 100.0 * n_out / n,
            "cde_loss": sums[1] / n,
            "pit_ks": ks,
        }

    def _kth_deviation(self, cum, rows_base, m, k) -> np.ndarray:
        """k-th smallest |r - m| of each resample: bisection on the float64 bit pattern, then snapped."""
        r = self.r
        # invariant: fewer than k values within t(lo) of m, at least k within t(hi); t(bits) = bits as float64
        lo = np.full(m.shape, -1, dtype=np.int64)
        hi = np.full(m.shape, _INF_BITS, dtype=np.int64)
        while True:
            active = hi - lo > 1
            if not active.any():
                break
            mid = np.where(active, lo + (hi - lo) // 2, hi)
            t = mid.view(np.float64)
            above = np.searchsorted(r, m + t, side="right")  # r[:above] <= m + t
            below = np.searchsorted(r, m - t, side="left")  # r[:below] < m - t
            enough = cum[rows_base + above] - cum[rows_base + below] >= k
            hi = np.where(active & enough, mid, hi)
            lo = np.where(active & ~enough, mid, lo)
        t = hi.view(np.float64)
        # snap to the deviation of the farthest value inside [m - t, m + t], i.e. the k-th value itself
        ia = np.searchsorted(r, m + t, side="right") - 1
        ib = np.searchsorted(r, m - t, side="left")
        right = np.where(ia >= 0, r[np.clip(ia, 0, self.n - 1)] - m, -np.inf)
        left = np.where(ib < self.n, m - r[np.clip(ib, 0, self.n - 1)], -np.inf)
        return np.maximum(right, left)

    def _ks(self, counts_r: np.ndarray) -> float:
        """KS distance from uniform of one resample's PIT values, given counts in r-sorted order."""
        c, cum, diff = self._c, self._cum, self._diff
        np.take(counts_r, self.pit_order, out=c)  # counts in PIT order
        np.cumsum(c, out=cum)
        d_plus = np.subtract(cum, self.n_pit, out=diff).max()  # n * (F_n(x_i) - x_i)
        # n * (x_i - F_n(x_i-)), where F_n(x_i-) is the cumulative count before position i
        d_minus = max(self.n_pit[0], np.subtract(self.n_pit[1:], cum[:-1], out=diff[1:]).max(initial=-np.inf))
        return float(max(d_plus, d_minus)) / self.n


def bootstrap_metrics(
    terms: GalaxyTerms,
    B: int = 1000,
    seed: int | np.random.SeedSequence = 0,
    outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD,
    max_elements: int = 2**22,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """B bootstrap replicates of each metric of METRIC_NAMES: {name: array (B,)}; memory O(max_elements)."""
    B = int(B)
    if terms.n == 0 or B <= 0:
        return {name: np.full(max(B, 0), np.nan) for name in METRIC_NAMES}
    res = _Resampler(terms, outlier_threshold)
    n = terms.n
    rng = np.random.default_rng(seed)
    per_batch = max(1, min(B, 256, int(max_elements) // n))
    out = {name: np.empty(B) for name in METRIC_NAMES}
    counts = np.empty((per_batch, n), dtype=res.count_dtype)
    cum = np.empty(per_batch * n + 1, dtype=np.int64)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=B, desc=f"bootstrap ({n:,} galaxies)", unit="resample", leave=False)
    try:
        for start in range(0, B, per_batch):
            b = min(per_batch, B - start)
            for j in range(b):  # one resample at a time: the index array stays in cache
                counts[j] = np.bincount(rng.integers(0, n, size=n), minlength=n)
            for name, values in res.replicates(counts[:b], cum).items():
                out[name][start : start + b] = values
            if bar is not None:
                bar.update(b)
    finally:
        if bar is not None:
            bar.close()
    return out


# --------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A metric's value on the full sample and its bootstrap spread.

    error: standard deviation of the replicates; low, high: their 2.5 and 97.5 percentiles.
    """

    value: float
    error: float
    low: float
    high: float

    @classmethod
    def from_replicates(cls, value: float, replicates: np.ndarray) -> Estimate:
        """Summarise bootstrap replicates around the full-sample value."""
        reps = np.asarray(replicates, dtype=np.float64)
        reps = reps[np.isfinite(reps)]
        if reps.size < 2:
            return cls(float(value), math.nan, math.nan, math.nan)
        lo, hi = np.percentile(reps, [2.5, 97.5])
        return cls(float(value), float(reps.std(ddof=1)), float(lo), float(hi))

    def format(self, scale: float = 1.0) -> str:
        """Paper style, e.g. '2.438(4)' for value 0.02438 +- 0.00004 with scale 1e-2."""
        return format_uncertainty(self.value, self.error, scale=scale)

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready dict (NaN -> None)."""
        return {k: _json_float(getattr(self, k)) for k in ("value", "error", "low", "high")}


@dataclass(frozen=True)
class MetricsRow:
    """The metrics of one (sub)population: counts and an Estimate per metric of METRIC_NAMES."""

    name: str
    n: int
    nmad: Estimate
    bias: Estimate
    outlier_fraction: Estimate
    cde_loss: Estimate
    pit_ks: Estimate
    outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD
    bootstrap: int = 0
    n_outside_label_range: int = 0

    def to_dict(self) -> dict:
        """JSON-ready dict of the row."""
        d = {
            "name": self.name,
            "n": self.n,
            "n_outside_label_range": self.n_outside_label_range,
            "outlier_threshold": self.outlier_threshold,
            "bootstrap": self.bootstrap,
        }
        d.update({name: getattr(self, name).to_dict() for name in METRIC_NAMES})
        return d


def summarize(
    terms: GalaxyTerms,
    name: str = "all",
    B: int = 1000,
    seed: int | np.random.SeedSequence = 0,
    outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD,
    progress: bool = False,
) -> MetricsRow:
    """Metrics of one population with bootstrap uncertainties (B resamples from `seed`)."""
    values = point_metrics(terms, outlier_threshold)
    reps = bootstrap_metrics(terms, B=B, seed=seed, outlier_threshold=outlier_threshold, progress=progress)
    estimates = {m: Estimate.from_replicates(values[m], reps[m]) for m in METRIC_NAMES}
    return MetricsRow(
        name=name,
        n=terms.n,
        outlier_threshold=float(outlier_threshold),
        bootstrap=int(B),
        n_outside_label_range=int((~terms.in_label_range).sum()),
        **estimates,
    )


def metrics_table(
    z_true,
    pmf,
    masks: Mapping[str, np.ndarray] | None = None,
    B: int = 1000,
    seed: int = 0,
    outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD,
    progress: bool = False,
    terms: GalaxyTerms | None = None,
) -> list[MetricsRow]:
    """One MetricsRow for all galaxies ("all") and one per named boolean mask (subpopulations)."""
    if terms is None:
        terms = galaxy_terms(z_true, pmf)
    populations = {"all": None, **dict(masks or {})}
    rows = []
    for i, (name, mask) in enumerate(populations.items()):
        sub = terms if mask is None else terms.subset(mask)
        # an independent, reproducible stream per population
        sub_seed = np.random.SeedSequence([int(seed), i])
        rows.append(
            summarize(sub, name, B=B, seed=sub_seed, outlier_threshold=outlier_threshold, progress=progress)
        )
    return rows


ZERO_SPREAD = 1e-9
"""Relative size (of max(|value|, 1) after scaling) below which a spread is rounding noise, printed as none."""


def format_uncertainty(value: float, error: float, scale: float = 1.0, digits: int = 1) -> str:
    """Paper style 'value(error)': value/scale rounded at the error's leading digit(s), e.g. '2.438(4)'.

    An error below ``ZERO_SPREAD`` of the value's size (floating-point noise, e.g. the 5.6e-17 bootstrap
    spread of a one-galaxy subpopulation, whose replicates are all the same) counts as zero; a zero or
    undefined error prints the value alone, to 4 significant digits.
    """
    v = float(value) / scale
    e = abs(float(error)) / scale
    if not math.isfinite(v):
        return str(v)
    if not math.isfinite(e) or e <= ZERO_SPREAD * max(abs(v), 1.0):
        return f"{v:.4g}"
    decimals = (digits - 1) - math.floor(math.log10(e))
    e_rounded = round(e, decimals)
    if e_rounded >= 10.0 ** (digits - decimals):  # e.g. 0.0096 rounds up to 0.010: one digit fewer
        decimals -= 1
        e_rounded = round(e, decimals)
    if decimals > 0:
        vs = f"{v:.{decimals}f}"
        es = str(round(e_rounded * 10**decimals))
    else:
        q = 10 ** (-decimals)
        vs = str(round(v / q) * q)
        es = str(round(e_rounded / q) * q)
    if vs.startswith("-") and float(vs) == 0.0:
        vs = vs[1:]
    return f"{vs}({es})"


_TABLE_COLUMNS = (
    # metric, header, scale
    ("nmad", "NMAD (×10⁻²)", 1e-2),
    ("bias", "Bias (×10⁻²)", 1e-2),
    ("outlier_fraction", "η (%)", 1.0),
    ("cde_loss", "CDE loss", 1.0),
    ("pit_ks", "PIT KS (×10⁻²)", 1e-2),
)


def markdown_table(rows: list[MetricsRow]) -> str:
    """The rows as a markdown table in the paper's style (uncertainty in the last digit in parentheses)."""
    thr = rows[0].outlier_threshold if rows else DEFAULT_OUTLIER_THRESHOLD
    header = ["Subpopulation", "N"] + [
        h.replace("η (%)", f"η (%, \\|r\\| > {thr:g})") for _, h, _ in _TABLE_COLUMNS
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |",
    ]
    for row in rows:
        cells = [row.name.replace("|", "\\|"), f"{row.n:,}"] + [
            getattr(row, m).format(scale) for m, _, scale in _TABLE_COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _json_float(x: float) -> float | None:
    """x as a JSON number, None for NaN/inf."""
    x = float(x)
    return x if math.isfinite(x) else None
