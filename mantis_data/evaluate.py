"""Evaluate any model's redshift PMFs: the paper's metrics table (markdown + JSON) and plots.

The input is a predictions file (Parquet, documented in docs/predictions.md): one row per galaxy with
``target_id`` (string), ``z`` (float64, the spectroscopic redshift), and either ``pmf`` (a fixed-size list
of 400 float32, one probability per grid value 0, 0.004, ..., 1.596) or ``pmf_path`` (the same path on
every row, naming a ``.npy`` array of shape (rows, 400) aligned with the rows; relative paths are
resolved against the predictions file's folder). An optional ``survey`` column adds one table row per
survey. ``write_predictions`` writes this format.

``mantis-data evaluate PREDICTIONS --out DIR`` writes into DIR: ``metrics.md`` and ``metrics.json``
(all galaxies, each survey, each redshift range), ``pit_histogram.png``, ``zhat_vs_ztrue.png`` (the
density of point estimates against true redshift, with a random sample's 90% credible intervals) and
``metrics_by_redshift.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._io import atomic_path, atomic_write_text
from .errors import InputDataError
from .metrics import (
    DEFAULT_OUTLIER_THRESHOLD,
    METRIC_NAMES,
    MetricsRow,
    galaxy_terms,
    markdown_table,
    metrics_table,
    pit_histogram,
)
from .redshift import GRID, N_BINS, InvalidPMFError, credible_interval, validate_pmf

PREDICTIONS_FORMAT = "mantis_data.predictions/1"
"""Value of the ``mantis_data.format`` key in the Parquet metadata written by ``write_predictions``."""
REPORT_FORMAT = "mantis_data.metrics/1"
"""Value of ``format`` in metrics.json."""
DEFAULT_Z_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6)
"""Edges of the redshift ranges reported as subpopulations (and plotted in metrics_by_redshift.png)."""
PIT_BINS = 20
INTERVAL_LEVEL = 0.9
FORMAT_HELP = (
    "see docs/predictions.md for the format, or write it with mantis_data.evaluate.write_predictions"
)


@dataclass(frozen=True)
class Predictions:
    """A predictions file in memory: target_id (str, n), z (float64, n), pmf (n, 400), survey (str, n) or None."""

    path: Path
    target_id: np.ndarray
    z: np.ndarray
    pmf: np.ndarray
    survey: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Number of galaxies."""
        return int(self.z.shape[0])


# --------------------------------------------------------------------------------------------------
# The predictions file
# --------------------------------------------------------------------------------------------------


def write_predictions(path, target_id, z, pmf, survey=None) -> Path:
    """Write a predictions file (Parquet) atomically; pmf is an (n, 400) array or the path of such a .npy."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    ids = np.asarray(target_id).astype(str)
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    n = z.shape[0]
    if ids.shape != (n,):
        raise ValueError(f"target_id has shape {ids.shape} but z has {n} values")
    columns = {"target_id": pa.array(ids, type=pa.string()), "z": pa.array(z, type=pa.float64())}
    if isinstance(pmf, (str, os.PathLike)):
        npy = Path(pmf)
        arr = _load_npy(npy, path, n)
        validate_pmf(arr)
        try:
            stored = os.path.relpath(npy.resolve(), path.resolve().parent)
        except ValueError:  # another drive on Windows
            stored = str(npy.resolve())
        columns["pmf_path"] = pa.array([stored] * n, type=pa.string())
    else:
        arr = validate_pmf(np.asarray(pmf))
        if arr.shape != (n, N_BINS):
            raise InvalidPMFError(f"pmf has shape {arr.shape}; expected ({n}, {N_BINS}), one row per galaxy")
        flat = pa.array(np.ascontiguousarray(arr, dtype=np.float32).reshape(-1), type=pa.float32())
        columns["pmf"] = pa.FixedSizeListArray.from_arrays(flat, N_BINS)
    if survey is not None:
        surveys = np.asarray(survey).astype(str)
        if surveys.shape != (n,):
            raise ValueError(f"survey has shape {surveys.shape} but z has {n} values")
        columns["survey"] = pa.array(surveys, type=pa.string())
    table = pa.table(columns).replace_schema_metadata(
        {"mantis_data.format": PREDICTIONS_FORMAT, "mantis_data.grid": f"0:{GRID[-1]:g}:{N_BINS}"}
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_predictions(path) -> Predictions:
    """Read a predictions file (docs/predictions.md); user errors raise InputDataError naming the file."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"predictions file {path} does not exist; {FORMAT_HELP}")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputDataError(f"{path} is not a readable Parquet file ({exc}); {FORMAT_HELP}") from exc
    names = pf.schema_arrow.names
    missing = [c for c in ("target_id", "z") if c not in names]
    if "pmf" not in names and "pmf_path" not in names:
        missing.append("pmf (or pmf_path)")
    if missing:
        raise InputDataError(
            f"predictions file {path} has no column {', '.join(missing)} (it has: {', '.join(names)}); "
            f"a predictions file needs target_id, z and pmf or pmf_path; {FORMAT_HELP}"
        )
    if "pmf" in names and "pmf_path" in names:
        raise InputDataError(f"predictions file {path} has both pmf and pmf_path columns; keep one of them")
    pmf_col = "pmf" if "pmf" in names else "pmf_path"
    columns = ["target_id", "z", pmf_col] + (["survey"] if "survey" in names else [])
    table = pf.read(columns=columns)
    n = table.num_rows

    zcol = table.column("z")
    if zcol.null_count:
        raise InputDataError(f"column z of {path} has {zcol.null_count} null value(s); drop those rows")
    try:
        z = zcol.cast(pa.float64()).to_numpy()
    except (pa.ArrowException, ValueError) as exc:
        raise InputDataError(
            f"column z of {path} is {zcol.type}, not a number ({exc}); store float64"
        ) from exc
    if not np.isfinite(z).all():
        raise InputDataError(
            f"column z of {path} has {int((~np.isfinite(z)).sum())} NaN/inf value(s); drop those rows"
        )

    ids = table.column("target_id")
    target_id = pc.cast(ids, pa.string()).to_numpy(zero_copy_only=False).astype(object)

    survey = None
    if "survey" in names:
        survey = pc.fill_null(pc.cast(table.column("survey"), pa.string()), "(none)")
        survey = survey.to_numpy(zero_copy_only=False).astype(str)

    if pmf_col == "pmf":
        pmf = _pmf_from_column(table.column("pmf"), path, n)
    else:
        paths = pc.unique(table.column("pmf_path").drop_null()).to_pylist() if n else []
        if len(paths) != 1 and n:
            raise InputDataError(
                f"column pmf_path of {path} must name one .npy file on every row; it names {len(paths)} "
                f"({paths[:3]}...); concatenate the arrays into one (rows, {N_BINS}) .npy"
            )
        npy = Path(paths[0]) if paths else None
        if npy is not None and not npy.is_absolute():
            npy = path.parent / npy
        pmf = _load_npy(npy, path, n) if npy is not None else np.zeros((0, N_BINS), np.float32)
    return Predictions(path=path, target_id=target_id, z=z, pmf=pmf, survey=survey)


def _pmf_from_column(col, path: Path, n: int) -> np.ndarray:
    """The pmf column (fixed-size or variable list of 400 numbers) as an (n, 400) float array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    fixed = pa.types.is_fixed_size_list(t)
    if not (fixed or pa.types.is_list(t) or pa.types.is_large_list(t)) or not (
        pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)
    ):
        raise InputDataError(
            f"column pmf of {path} has type {t}; it must be a fixed-size list of {N_BINS} float32 "
            f"(one probability per grid value 0, 0.004, ..., {GRID[-1]:g}); {FORMAT_HELP}"
        )
    if col.null_count:
        raise InputDataError(
            f"column pmf of {path} has {col.null_count} null row(s); every galaxy needs a PMF"
        )
    if fixed and t.list_size != N_BINS:
        raise InputDataError(
            f"column pmf of {path} holds lists of {t.list_size} values, not {N_BINS}; the PMF must have one "
            f"probability per grid value 0, 0.004, ..., {GRID[-1]:g} (the released model's 400 classes)"
        )
    if not fixed:
        lengths = pc.list_value_length(col).to_numpy()
        if lengths.size and (lengths != N_BINS).any():
            bad = int(np.flatnonzero(lengths != N_BINS)[0])
            raise InputDataError(
                f"column pmf of {path}: row {bad} holds {lengths[bad]} values, not {N_BINS}; every PMF must "
                f"have one probability per grid value 0, 0.004, ..., {GRID[-1]:g}"
            )
    parts = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in col.chunks]
    flat = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return flat.reshape(n, N_BINS)


def _load_npy(npy: Path, path: Path, n: int) -> np.ndarray:
    """Memory-map the (n, 400) .npy named by the predictions file `path`, checking it."""
    if not npy.is_file():
        raise InputDataError(
            f"PMF file {npy} named by predictions file {path} does not exist; "
            "pmf_path is resolved against the predictions file's folder"
        )
    try:
        arr = np.load(npy, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise InputDataError(
            f"PMF file {npy} (named by {path}) is not a readable .npy array ({exc})"
        ) from exc
    if arr.shape != (n, N_BINS):
        raise InputDataError(
            f"PMF file {npy} (named by {path}) has shape {arr.shape}; expected ({n}, {N_BINS}): one row per "
            f"row of the predictions file, one probability per grid value 0, 0.004, ..., {GRID[-1]:g}"
        )
    return arr


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def redshift_masks(z: np.ndarray, edges=DEFAULT_Z_EDGES) -> dict[str, np.ndarray]:
    """Boolean masks {"a <= z < b": mask} of the redshift ranges between consecutive edges."""
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"redshift edges must increase, with at least two values; got {edges}")
    return {f"{a:g} <= z < {b:g}": (z >= a) & (z < b) for a, b in zip(edges, edges[1:], strict=False)}


def evaluate(
    predictions,
    out_dir,
    bootstrap: int = 1000,
    seed: int = 0,
    outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD,
    z_edges=DEFAULT_Z_EDGES,
    n_intervals: int = 100,
    progress: bool = False,
    subpopulations=(),
) -> dict:
    """Write metrics.md, metrics.json and the three PNGs for a predictions file into out_dir; return the JSON.

    ``subpopulations``: ``mantis_data.subpopulations.Subpopulation`` rows to add (each after the redshift
    ranges, followed by its comparison catalog's own row when it has one).
    """
    from . import subpopulations as subpop_mod

    preds = predictions if isinstance(predictions, Predictions) else read_predictions(predictions)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        terms = galaxy_terms(preds.z, preds.pmf)
    except InvalidPMFError as exc:
        raise InputDataError(f"PMFs of predictions file {preds.path}: {exc}") from exc

    masks: dict[str, np.ndarray] = {}
    if preds.survey is not None:
        for name in sorted(set(preds.survey.tolist())):
            masks[f"survey={name}"] = preds.survey == name
    z_masks = redshift_masks(preds.z, z_edges)
    masks.update(z_masks)
    subpops = list(subpopulations)
    for sp in subpops:
        masks[sp.name] = np.asarray(sp.mask, dtype=bool)
    rows = metrics_table(
        preds.z,
        None,
        masks=masks,
        B=bootstrap,
        seed=seed,
        outlier_threshold=outlier_threshold,
        progress=progress,
        terms=terms,
    )
    rows = subpop_mod.with_comparisons(rows, subpops, bootstrap, seed, outlier_threshold)
    counts, edges = pit_histogram(terms.pit, PIT_BINS)

    plots = {
        "pit_histogram": "pit_histogram.png",
        "zhat_vs_ztrue": "zhat_vs_ztrue.png",
        "metrics_by_redshift": "metrics_by_redshift.png",
    }
    _draw_plots(out_dir, plots, preds, terms, rows, z_masks, z_edges, outlier_threshold, n_intervals, seed)

    report = {
        "format": REPORT_FORMAT,
        "predictions": str(preds.path),
        "n": preds.n,
        "bootstrap": int(bootstrap),
        "seed": int(seed),
        "outlier_threshold": float(outlier_threshold),
        "z_edges": [float(e) for e in z_edges],
        "definitions": {
            "r": "(z_hat - z) / (1 + z), z_hat = sum(pmf * grid); positive bias = z_hat too high "
            "(the released code's and the community's sign; the paper's text writes z - z_hat)",
            "nmad": "1.4826 * median(|r - median(r)|)",
            "bias": "mean(r)",
            "outlier_fraction": f"percentage of galaxies with |r| > {outlier_threshold:g}",
            "cde_loss": "mean(integral p^2 dz) - 2 mean(p(z_true)), p = pmf / 0.004 on cells centred on the grid",
            "pit_ks": "sup |F(PIT) - PIT|, the KS distance of the PIT values from U(0, 1)",
            "error": "standard deviation of the bootstrap replicates; low/high: their 2.5 and 97.5 percentiles",
        },
        "rows": [row.to_dict() for row in rows],
        "subpopulations": subpop_mod.describe(subpops),
        "pit_histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        "plots": plots,
    }
    _write_text(out_dir / "metrics.json", json.dumps(report, indent=2) + "\n")
    _write_text(out_dir / "metrics.md", _markdown_report(report, rows, plots))
    return report


def _markdown_report(report: dict, rows: list[MetricsRow], plots: dict[str, str]) -> str:
    """metrics.md: the table in the paper's style, then the notes and the plots."""
    from . import subpopulations
    n_out = rows[0].n_outside_label_range if rows else 0
    lines = [
        "# Photometric redshift metrics",
        "",
        f"Predictions: `{report['predictions']}` ({report['n']:,} galaxies). "
        f"Uncertainties: standard deviation of {report['bootstrap']:,} bootstrap resamples "
        f"(seed {report['seed']}), written as the leading digit of the uncertainty in parentheses: "
        "2.438(4) means 2.438 ± 0.004.",
        "",
        markdown_table(rows),
        "Definitions (Engel et al., Sec. 6.1): r = (ẑ − z)/(1 + z) with ẑ = Σ PMF × grid "
        "(the sign of the code behind the paper's tables and of the photo-z community; the paper's text "
        "writes z − ẑ, but its tables use ẑ − z); "
        "NMAD = 1.4826 × median(|r − median(r)|); bias = mean(r); "
        f"η = percentage of |r| > {report['outlier_threshold']:g}; "
        "CDE loss = mean ∫p̂² dz − 2 mean p̂(z), with p̂ = PMF / 0.004; "
        "PIT KS = Kolmogorov–Smirnov distance of the PIT values from uniform.",
        "",
    ]
    lines += subpopulations.markdown_notes(report.get("subpopulations", []))
    if n_out:
        lines += [
            f"{n_out:,} galaxies lie outside the label range 0 < z < 1.6; the model's density there is 0.",
            "",
        ]
    lines += [
        f"![PIT histogram]({plots['pit_histogram']})",
        "",
        f"![Point estimate against true redshift]({plots['zhat_vs_ztrue']})",
        "",
        f"![Metrics per redshift range]({plots['metrics_by_redshift']})",
        "",
    ]
    return "\n".join(lines)


def _write_text(path: Path, text: str) -> None:
    """Write a text file atomically (temp file + os.replace)."""
    atomic_write_text(text, path)


def _draw_plots(out_dir, plots, preds, terms, rows, z_masks, z_edges, threshold, n_intervals, seed) -> None:
    """The report's three PNGs (mantis_data.plots)."""
    from . import plots as figures

    figures.pit_histogram(terms.pit, preds.survey, out_dir / plots["pit_histogram"], bins=PIT_BINS,
                          ks_text=rows[0].pit_ks.format() if rows else None)
    k = min(int(n_intervals), preds.n)
    intervals = None
    if k > 0:
        idx = np.sort(np.random.default_rng(seed).choice(preds.n, size=k, replace=False))
        lo, hi = credible_interval(np.asarray(preds.pmf[idx]), INTERVAL_LEVEL)
        intervals = (idx, lo, hi, INTERVAL_LEVEL)
    figures.zhat_vs_z(terms.z_true, terms.z_hat, out_dir / plots["zhat_vs_ztrue"], threshold, intervals=intervals)
    figures.metrics_by_redshift([r for r in rows if r.name in z_masks], z_edges, out_dir / plots["metrics_by_redshift"])


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `evaluate` subcommand's arguments to a parser."""
    from ._cli import nonnegative_int, positive_float

    parser.add_argument("predictions", type=Path, help="predictions file (Parquet; see docs/predictions.md)")
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder for metrics.md, metrics.json, PNGs"
    )
    parser.add_argument(
        "--bootstrap",
        type=nonnegative_int,
        default=1000,
        metavar="B",
        help="bootstrap resamples per row (0: no spreads; the paper used 100,000)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed of the bootstrap and the plotted sample"
    )
    parser.add_argument(
        "--outlier-threshold",
        type=positive_float,
        default=DEFAULT_OUTLIER_THRESHOLD,
        help="catastrophic outlier when |r| exceeds this (the paper's 0.05; 0.15 is common)",
    )
    parser.add_argument(
        "--z-edges",
        type=_parse_edges,
        default=DEFAULT_Z_EDGES,
        metavar="E0,E1,...",
        help="edges of the redshift ranges reported as rows (default: 0,0.2,...,1.6)",
    )
    parser.add_argument(
        "--intervals",
        type=nonnegative_int,
        default=100,
        metavar="N",
        help="random galaxies drawn with their 90%% intervals in zhat_vs_ztrue.png",
    )
    from .subpopulations import add_arguments

    add_arguments(parser)


def _parse_edges(text: str) -> tuple[float, ...]:
    """Comma-separated increasing redshift edges."""
    try:
        edges = tuple(float(x) for x in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise argparse.ArgumentTypeError(f"expected at least two increasing edges, got {text!r}")
    return edges


_SUMMARY_LABELS = {"nmad": "NMAD", "bias": "bias", "outlier_fraction": "η", "cde_loss": "CDE loss", "pit_ks": "PIT KS"}


def summary_line(row: dict) -> str:
    """'NMAD 0.0213, bias -0.0012, η 77.78%, ...' of a report row (η, the outlier fraction, is already a
    percentage in the row); undefined metrics are left out."""
    parts = []
    for m in METRIC_NAMES:
        value = row[m]["value"]
        if value is None or math.isnan(value):
            continue
        label = _SUMMARY_LABELS.get(m, m)
        parts.append(f"{label} {value:.2f}%" if m == "outlier_fraction" else f"{label} {value:.4g}")
    return ", ".join(parts)


def run_evaluate(args: argparse.Namespace) -> int:
    """Run `mantis-data evaluate`; return the exit status (user errors raise MantisDataError)."""
    from .subpopulations import from_args

    preds = read_predictions(args.predictions)
    report = evaluate(
        preds,
        args.out,
        bootstrap=args.bootstrap,
        seed=args.seed,
        outlier_threshold=args.outlier_threshold,
        z_edges=getattr(args, "z_edges", DEFAULT_Z_EDGES),
        n_intervals=getattr(args, "intervals", 100),
        progress=sys.stderr.isatty(),
        subpopulations=from_args(args, preds.target_id, preds.z),
    )
    print(f"{report['n']:,} galaxies: {summary_line(report['rows'][0])}")
    for sp in report["subpopulations"]:
        print(f"  {sp['name']}: {sp['n']:,} galaxies")
    print(f"wrote {Path(args.out) / 'metrics.md'}, metrics.json and {len(report['plots'])} plots")
    return 0
