"""Benchmark: all photo-z metrics with bootstrap uncertainties on 1,000,000 galaxies x 400-bin PMFs.

    python benchmarks/metrics.py [--n 1000000] [--bootstrap 1000] [--baseline-resamples 10]

Builds synthetic float32 PMFs (Gaussians of random width around noisy truths, plus 5% outliers), then
times each stage of mantis_data.metrics: the per-galaxy pass over the PMFs (point estimate, residual,
PIT, CDE term), the full-sample metrics, the bootstrap of every metric with B resamples, and the PIT
histogram. Side by side, in the same process, it times a straightforward baseline: per-galaxy numbers
with whole-array float64 numpy on a 100,000-galaxy slice, and the bootstrap as np.random.choice index
arrays with np.median / np.sort per resample, on a few resamples; both are scaled to the full n and B.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mantis_data import metrics as M  # noqa: E402
from mantis_data.redshift import BIN_WIDTH, GRID, redshift_class  # noqa: E402


def synthetic_pmfs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(z_true float64 (n,), pmf float32 (n, 400)): Gaussian PMFs around noisy truths, 5% outliers."""
    rng = np.random.default_rng(seed)
    z = rng.gamma(3.0, 0.15, n).clip(0.005, 1.55)
    sigma = rng.uniform(0.01, 0.05, n) * (1 + z)
    centre = z + rng.normal(0.0, 1.0, n) * sigma
    outliers = rng.random(n) < 0.05
    centre[outliers] = rng.uniform(0.0, 1.6, outliers.sum())
    pmf = np.empty((n, GRID.size), dtype=np.float32)
    grid = GRID.astype(np.float32)
    step = 50_000
    for s in range(0, n, step):
        e = slice(s, min(n, s + step))
        x = (grid[None, :] - centre[e, None].astype(np.float32)) / sigma[e, None].astype(np.float32)
        p = np.exp(np.float32(-0.5) * x * x)
        p += np.float32(1e-7)
        p /= p.sum(axis=1, keepdims=True)
        pmf[e] = p
    return z, pmf


def baseline_terms(z: np.ndarray, pmf: np.ndarray) -> dict[str, np.ndarray]:
    """Per-galaxy numbers the straightforward way: whole-array float64 numpy, no chunking."""
    p = pmf.astype(np.float64)
    p /= p.sum(axis=1, keepdims=True)
    pdf = p / BIN_WIDTH
    z_hat = (p * GRID).sum(axis=1)
    cdf = np.cumsum(p, axis=1)
    u = (z - (GRID[0] - BIN_WIDTH / 2)) / BIN_WIDTH
    i = np.clip(np.floor(u), 0, GRID.size - 1).astype(int)
    rows = np.arange(len(p))
    pit = (cdf - p)[rows, i] + np.clip(u - i, 0, 1) * p[rows, i]
    k = redshift_class(z, out_of_range="mask")
    cde = (pdf**2).sum(axis=1) * BIN_WIDTH - 2 * np.where(k >= 0, pdf[rows, np.maximum(k, 0)], 0.0)
    return {"z_hat": z_hat, "r": (z_hat - z) / (1 + z), "pit": pit, "cde": cde}


def baseline_bootstrap(terms: M.GalaxyTerms, resamples: int, seed: int = 1) -> np.ndarray:
    """Naive bootstrap: np.random.choice indices, then every metric on the resampled arrays."""
    rng = np.random.default_rng(seed)
    out = np.empty((resamples, 5))
    for b in range(resamples):
        idx = rng.choice(terms.n, size=terms.n, replace=True)
        r = terms.r[idx]
        out[b] = (
            M.nmad(r),
            M.bias(r),
            M.outlier_fraction(r),
            terms.cde_term[idx].mean(),
            M.ks_uniform(terms.pit[idx]),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print seconds per stage, the total and the ratio against the baseline."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="galaxies (default 1,000,000)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples B (default 1000)")
    ap.add_argument("--baseline-resamples", type=int, default=10, help="naive resamples timed, then scaled")
    ap.add_argument("--baseline-rows", type=int, default=100_000, help="rows of the naive per-galaxy pass")
    args = ap.parse_args(argv)
    n, B = args.n, args.bootstrap

    t0 = time.perf_counter()
    z, pmf = synthetic_pmfs(n)
    print(
        f"synthetic PMFs: {n:,} x {GRID.size} float32 ({pmf.nbytes / 2**30:.2f} GiB) "
        f"built in {time.perf_counter() - t0:.1f} s (not counted)"
    )

    stages: dict[str, float] = {}
    t = time.perf_counter()
    terms = M.galaxy_terms(z, pmf)
    stages["per-galaxy pass (z_hat, r, PIT, CDE term)"] = time.perf_counter() - t
    t = time.perf_counter()
    values = M.point_metrics(terms)
    stages["full-sample metrics (NMAD, bias, eta, CDE, KS)"] = time.perf_counter() - t
    t = time.perf_counter()
    reps = M.bootstrap_metrics(terms, B=B, seed=0)
    stages[f"bootstrap, B={B:,}, all 5 metrics"] = time.perf_counter() - t
    t = time.perf_counter()
    M.pit_histogram(terms.pit)
    stages["PIT histogram"] = time.perf_counter() - t
    total = sum(stages.values())

    print(f"\nmantis_data.metrics on {n:,} galaxies:")
    for name, sec in stages.items():
        print(f"  {name:<50s} {sec:8.2f} s")
    print(f"  {'total':<50s} {total:8.2f} s")
    print("\nvalues:")
    for name in M.METRIC_NAMES:
        est = M.Estimate.from_replicates(values[name], reps[name])
        print(f"  {name:<18s} {est.value:+.6f}  bootstrap sd {est.error:.2e}  paper style {est.format()}")

    # the straightforward baseline, side by side, scaled to n and B
    rows = min(args.baseline_rows, n)
    t = time.perf_counter()
    base = baseline_terms(z[:rows], pmf[:rows])
    base_terms = (time.perf_counter() - t) * n / rows
    agree = np.allclose(base["pit"], terms.pit[:rows], atol=1e-9) and np.allclose(
        base["z_hat"], terms.z_hat[:rows]
    )
    nb = max(1, args.baseline_resamples)
    t = time.perf_counter()
    baseline_bootstrap(terms, nb)
    base_boot = (time.perf_counter() - t) * B / nb
    base_total = base_terms + stages["full-sample metrics (NMAD, bias, eta, CDE, KS)"] + base_boot
    print(
        f"\nbaseline (whole-array float64 on {rows:,} rows; np.random.choice bootstrap on {nb} resamples), scaled:"
    )
    print(
        f"  {'per-galaxy pass':<50s} {base_terms:8.2f} s   ratio {base_terms / stages['per-galaxy pass (z_hat, r, PIT, CDE term)']:.1f}x"
        f"   (same values: {agree})"
    )
    boot_key = f"bootstrap, B={B:,}, all 5 metrics"
    print(f"  {'bootstrap':<50s} {base_boot:8.2f} s   ratio {base_boot / stages[boot_key]:.1f}x")
    print(f"  {'total':<50s} {base_total:8.2f} s   ratio {base_total / total:.1f}x")
    print(
        f"\npeak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB "
        "(includes the PMF array and the baseline's float64 slice)"
    )
    print(
        f"{'PASS' if total < 60 else 'SLOW'}: all metrics with B={B:,} on {n:,} galaxies in {total:.1f} s (target < 60 s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
