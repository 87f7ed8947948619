"""Summaries and tables of the photo-z metrics: estimates with bootstrap spread, rows, paper-style formatting.

``Estimate`` and ``MetricsRow`` (JSON-ready), ``summarize`` / ``metrics_table`` (one row per population),
``format_uncertainty`` (``2.438(4)``) and ``markdown_table``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .metrics_bootstrap import bootstrap_metrics
from .metrics_galaxy import DEFAULT_OUTLIER_THRESHOLD, METRIC_NAMES, GalaxyTerms, galaxy_terms, point_metrics

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
