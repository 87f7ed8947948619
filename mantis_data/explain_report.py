"""Band importance against redshift: per-bin averages with bootstrap intervals, the paper's figure 8, baseline examples.

Input: the results table ``explain_release`` writes (one row per galaxy; columns ``z``,
``shapley_<band>``, ``mm_shap_<band>``, ``survey_shapley_<survey>``, ``survey_mm_shap_<survey>``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._io import atomic_path, atomic_write_text
from .bands import BANDS, SURVEY_ORDER, SURVEYS

__all__ = ["DEFAULT_EDGES", "bin_summary", "markdown_summary", "plot_baselines", "plot_vs_redshift", "write_csv"]

DEFAULT_EDGES: tuple[float, ...] = tuple(np.round(np.arange(0.0, 1.6001, 0.1), 4))
"""Redshift bin edges of the summary: 0, 0.1, ..., 1.6 (16 bins)."""
BAND_NAMES = tuple(b.name for b in BANDS)


def _players(kind: str) -> tuple[str, ...]:
    return BAND_NAMES if kind == "band" else SURVEY_ORDER


def _column(kind: str, stat: str, player: str) -> str:
    prefix = "" if kind == "band" else "survey_"
    return f"{prefix}{stat}_{player}"


def bin_summary(
    table: dict[str, np.ndarray], edges=DEFAULT_EDGES, bootstrap: int = 1000, seed: int = 0, kind: str = "band"
) -> list[dict]:
    """Per redshift bin: ``n`` and, per player and statistic (``shapley``, ``mm_shap``), the mean and its
    bootstrap 2.5/97.5 percentiles (``B = bootstrap`` resamples of the bin's galaxies; NaN below 2 galaxies).

    ``kind`` "band" (nine players) or "survey" (three).
    """
    z = np.asarray(table["z"], dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    rows = []
    rng = np.random.default_rng(seed)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (z >= lo) & (z < hi)
        n = int(sel.sum())
        row: dict = {"z_lo": float(lo), "z_hi": float(hi), "n": n}
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=bootstrap) if n >= 2 else None
        for stat in ("shapley", "mm_shap"):
            for p in _players(kind):
                v = np.asarray(table[_column(kind, stat, p)], dtype=np.float64)[sel]
                mean = float(v.mean()) if n else float("nan")
                lo_q = hi_q = float("nan")
                if counts is not None:
                    reps = counts @ v / n
                    lo_q, hi_q = (float(q) for q in np.percentile(reps, [2.5, 97.5]))
                row[f"{stat}_{p}"] = mean
                row[f"{stat}_{p}_lo"] = lo_q
                row[f"{stat}_{p}_hi"] = hi_q
        rows.append(row)
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    """Write summary rows as CSV, atomically."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    _atomic_text(path, buf.getvalue())


def _atomic_text(path: Path, text: str) -> None:
    atomic_write_text(text, path)


def markdown_summary(band_rows: list[dict], survey_rows: list[dict]) -> str:
    """The per-bin means (x 10^-3 for Shapley, % for MM-SHAP) as markdown tables, 95% intervals in brackets."""
    out = []
    for title, rows, kind in (("bands", band_rows, "band"), ("surveys", survey_rows, "survey")):
        players = _players(kind)
        for stat, scale, unit in (("shapley", 1e3, "Shapley value (x 10^-3 in z)"), ("mm_shap", 100.0, "MM-SHAP (%)")):
            out.append(f"### {unit} over the {title}, mean per redshift bin [95% bootstrap interval]\n")
            out.append("| z | n | " + " | ".join(players) + " |")
            out.append("| --- | ---: | " + " | ".join("---:" for _ in players) + " |")
            for r in rows:
                cells = []
                for p in players:
                    m, lo, hi = r[f"{stat}_{p}"], r[f"{stat}_{p}_lo"], r[f"{stat}_{p}_hi"]
                    if not np.isfinite(m):
                        cells.append("")
                    elif np.isfinite(lo):
                        cells.append(f"{m * scale:.2f} [{lo * scale:.2f}, {hi * scale:.2f}]")
                    else:
                        cells.append(f"{m * scale:.2f}")
                out.append(f"| {r['z_lo']:.1f}-{r['z_hi']:.1f} | {r['n']} | " + " | ".join(cells) + " |")
            out.append("")
    return "\n".join(out)


def _figure(**kwargs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path, dpi: int = 120) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


def band_colours() -> dict[str, tuple]:
    """A colour per band from its wavelength (violet for FUV through red for W2, log wavelength)."""
    from matplotlib import colormaps

    cmap = colormaps["turbo"]
    lw = np.log10([b.wavelength_angstrom for b in BANDS])
    t = 0.05 + 0.9 * (lw - lw.min()) / (lw.max() - lw.min())
    return {b.name: cmap(float(x)) for b, x in zip(BANDS, t, strict=True)}


def plot_vs_redshift(band_rows: list[dict], survey_rows: list[dict], path: Path, title: str = "") -> None:
    """Figure 8 of the paper: mean Shapley (left) and MM-SHAP (right) per redshift bin, a line per band
    coloured by wavelength with its 95% bootstrap band; the survey players in the bottom row."""
    colours = band_colours()
    survey_colours = {"galex": colours["NUV"], "ps1": colours["r"], "unwise": colours["W2"]}
    fig = _figure(figsize=(12, 8), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    for row_i, (rows, kind) in enumerate(((band_rows, "band"), (survey_rows, "survey"))):
        zc = np.array([(r["z_lo"] + r["z_hi"]) / 2 for r in rows])
        for col_i, (stat, label) in enumerate((("shapley", "Shapley value (Δz)"), ("mm_shap", "MM-SHAP"))):
            ax = axes[row_i, col_i]
            for p in _players(kind):
                m = np.array([r[f"{stat}_{p}"] for r in rows])
                lo = np.array([r[f"{stat}_{p}_lo"] for r in rows])
                hi = np.array([r[f"{stat}_{p}_hi"] for r in rows])
                c = colours[p] if kind == "band" else survey_colours[p]
                name = p if kind == "band" else SURVEYS[p].title.split(" (")[0]
                ax.plot(zc, m, "-o", ms=3, color=c, label=name)
                ax.fill_between(zc, lo, hi, color=c, alpha=0.15, linewidth=0)
            if stat == "shapley":
                ax.axhline(0.0, color="0.5", lw=0.8)
            ax.set_ylabel(label)
            ax.set_title(f"{'bands' if kind == 'band' else 'surveys'}: {label}")
            ax.grid(alpha=0.3)
            if col_i == 1:
                ax.legend(fontsize=8, ncol=1 if kind == "survey" else 2, loc="upper right")
        for ax in axes[row_i]:
            ax.set_xlim(float(rows[0]["z_lo"]), float(rows[-1]["z_hi"]))
    for ax in axes[1]:
        ax.set_xlabel("spectroscopic redshift z")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_baselines(cubes: dict[str, np.ndarray], baselines: dict[str, np.ndarray], path: Path, title: str = "") -> None:
    """Figures 11-13 of the paper: each band's stored cutout (top) and its baseline (bottom), asinh stretch,
    the same colour scale in both rows."""
    fig = _figure(figsize=(15, 4), layout="constrained")
    axes = fig.subplots(2, len(BANDS))
    for k, b in enumerate(BANDS):
        s = b.survey
        i = SURVEYS[s].bands.index(b.name)
        orig, base = np.asarray(cubes[s][i], dtype=np.float64), np.asarray(baselines[s][i], dtype=np.float64)
        med = np.median(orig)
        scale = 1.4826 * np.median(np.abs(orig - med)) or 1.0
        vmax = np.arcsinh((np.percentile(orig, 99.7) - med) / scale) or 1.0
        for row, img in enumerate((orig, base)):
            ax = axes[row, k]
            ax.imshow(np.arcsinh((img - med) / scale), origin="lower", cmap="gray", vmin=-1.0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{b.name}" + ("" if np.any(orig) else " (no data)"), fontsize=10)
        if k == 0:
            axes[0, 0].set_ylabel("original")
            axes[1, 0].set_ylabel("baseline")
    if title:
        fig.suptitle(title)
    _save(fig, path, dpi=100)
