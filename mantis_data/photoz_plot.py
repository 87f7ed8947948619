"""Figures of a forced photo-z: the nine cutouts and the PMF with its point estimate and credible intervals.

Uses matplotlib's object API (``Figure`` + Agg canvas, no pyplot state), so figures can be drawn from
several threads at once (the web app).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ._io import atomic_write_bytes
from .bands import SURVEYS
from .photoz import PhotoZResult
from .redshift import GRID
from .schema import IMAGE_FIELDS


def _stretch(img: np.ndarray) -> np.ndarray:
    """An asinh display stretch of one band (linear flux): sky noise ~1, clipped at the 99.7th percentile."""
    x = np.asarray(img, dtype=np.float64)
    med = np.median(x)
    noise = 1.4826 * np.median(np.abs(x - med)) or (np.std(x) or 1.0)
    y = np.arcsinh((x - med) / (3.0 * noise))
    lo, hi = np.percentile(y, [1.0, 99.7])
    return np.clip((y - lo) / ((hi - lo) or 1.0), 0.0, 1.0)


def _bands() -> list[tuple[str, str, int]]:
    return [(s, b, i) for s in IMAGE_FIELDS for i, b in enumerate(SURVEYS[s].bands)]


def draw_cutouts(fig, spec, result: PhotoZResult) -> None:
    """The nine bands of ``result.images`` (FUV NUV g r i z y W1 W2) in a 3 x 3 grid inside ``spec``."""
    grid = spec.subgridspec(3, 3, wspace=0.05, hspace=0.25)
    for k, (survey, band, i) in enumerate(_bands()):
        ax = fig.add_subplot(grid[k // 3, k % 3])
        cube = (result.images or {}).get(survey)
        if cube is not None:
            ax.imshow(_stretch(cube[i]), cmap="gray", origin="lower", interpolation="nearest")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_title(f"{survey.upper() if survey != 'unwise' else 'unWISE'} {band}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])


def draw_pmf(ax, result: PhotoZResult) -> None:
    """The PMF over the redshift grid with the 95% and 68% intervals shaded and the mean and mode marked."""
    pmf = np.asarray(result.pmf, dtype=np.float64)
    for level, colour in ((0.95, "#deebf7"), (0.68, "#9ecae1")):
        lo, hi = result.intervals[level]
        ax.axvspan(lo, hi, color=colour, lw=0, label=f"{level:.0%} interval [{lo:.3f}, {hi:.3f}]")
    ax.plot(GRID, pmf, color="k", lw=1.2, label="P(z)")
    ax.axvline(result.z_mean, color="#d62728", lw=1.5, label=f"mean z = {result.z_mean:.4f}")
    ax.axvline(result.z_mode, color="#ff7f0e", lw=1.2, ls="--", label=f"mode z = {result.z_mode:.3f}")
    ax.set_xlim(GRID[0], GRID[-1])
    ax.set_ylim(0, max(pmf.max() * 1.1, 1e-6))
    ax.set_xlabel("redshift z")
    ax.set_ylabel("probability per grid value (0.004)")
    ax.legend(loc="upper right", fontsize=9, framealpha=0.9)


def result_figure(result: PhotoZResult, title: str | None = None):
    """A matplotlib Figure: the nine cutouts on the left, the PMF (or the reason there is none) on the right."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5.4), dpi=100)
    gs = fig.add_gridspec(1, 2, width_ratios=[1.0, 1.45], wspace=0.18, left=0.02, right=0.98, top=0.86, bottom=0.11)
    draw_cutouts(fig, gs[0, 0], result)
    ax = fig.add_subplot(gs[0, 1])
    if result.ok:
        draw_pmf(ax, result)
        lo68, hi68 = result.intervals[0.68]
        lo95, hi95 = result.intervals[0.95]
        sub = f"z = {result.z_mean:.4f}   68%: [{lo68:.3f}, {hi68:.3f}]   95%: [{lo95:.3f}, {hi95:.3f}]"
    else:
        ax.text(0.5, 0.5, f"no prediction:\n{result.reason}", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        sub = "no prediction"
    flags = [k for k in ("no_galex_coverage", "below_dec_-30", "outside_ps1") if result.flags.get(k)]
    frac = result.flags.get("ps1_nan_frac")
    if frac is not None and np.nanmax(np.nan_to_num(frac, nan=0.0)) > 0:
        flags.append(f"PS1 NaN up to {100 * float(np.nanmax(frac)):.2f}%")
    head = title or f"forced photo-z at RA {result.ra:.6f}, Dec {result.dec:+.6f} (deg)"
    fig.suptitle(f"{head}\n{sub}" + (f"   flags: {', '.join(flags)}" if flags else ""), fontsize=11)
    return fig


def figure_png(result: PhotoZResult, title: str | None = None) -> bytes:
    """PNG bytes of ``result_figure``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = result_figure(result, title)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save_png(result: PhotoZResult, path: str | os.PathLike, title: str | None = None) -> Path:
    """Write ``result_figure`` as a PNG atomically (temporary file, then rename); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(figure_png(result, title), path)
    return path
