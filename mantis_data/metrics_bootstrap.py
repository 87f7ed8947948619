"""Bootstrap of the photo-z metrics: a generic bootstrap and the fast count-based one of all five metrics.

``bootstrap_metrics`` resamples galaxies as index counts and reads each resample's metrics off the
per-galaxy terms sorted once (``_Resampler``); see ``mantis_data.metrics`` for the method.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .metrics_galaxy import DEFAULT_OUTLIER_THRESHOLD, METRIC_NAMES, NMAD_SCALE, GalaxyTerms

_INF_BITS = np.array(np.inf).view(np.int64).item()


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
