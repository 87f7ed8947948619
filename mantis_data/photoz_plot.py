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
    top = pmf.max()
    if result.calibrated is not None:
        c = result.calibrated
        cal = np.asarray(c["pmf"], dtype=np.float64)
        lo, hi = c["intervals"][0.68]
        ax.plot(GRID, cal, color="#2ca02c", lw=1.4, label=f"calibrated P(z) (CalPIT), 68% [{lo:.3f}, {hi:.3f}]")
        ax.axvline(c["z_mean"], color="#2ca02c", lw=1.2, ls=":", label=f"calibrated mean z = {c['z_mean']:.4f}")
        top = max(top, cal.max())
    ax.set_xlim(GRID[0], GRID[-1])
    ax.set_ylim(0, max(top * 1.1, 1e-6))
    ax.set_xlabel("redshift z")
    ax.set_ylabel("probability per grid value (0.004)")
    ax.legend(loc="upper right", fontsize=9, framealpha=0.9)


BAND_COLOURS = ("#6a3d9a", "#1f78b4", "#33a02c", "#b2df8a", "#ff7f00", "#e31a1c", "#a50f15", "#7f2704", "#4d2600")
"""Bar colours of the nine bands, FUV ... W2 (blue to red with wavelength)."""


def draw_importance(ax, explanation: dict) -> None:
    """Bars of the per-band Shapley values (redshift units) with each band's MM-SHAP written above its bar."""
    bands = list(explanation["shapley"])
    phi = np.array([explanation["shapley"][b] for b in bands])
    mm = [explanation["mm_shap"][b] for b in bands]
    x = np.arange(len(bands))
    ax.bar(x, phi, color=BAND_COLOURS[: len(bands)], edgecolor="k", lw=0.5)
    ax.axhline(0, color="k", lw=0.8)
    span = max(float(np.abs(phi).max()), 1e-6)
    for i, (p, m) in enumerate(zip(phi, mm, strict=True)):
        ax.text(i, p + (0.04 * span if p >= 0 else -0.04 * span), f"{m:.2f}", ha="center",
                va="bottom" if p >= 0 else "top", fontsize=8)
    ax.set_ylim(min(0, phi.min()) - 0.2 * span, max(0, phi.max()) + 0.2 * span)
    ax.set_xticks(x, bands, fontsize=9)
    ax.set_ylabel("Shapley value (redshift)")
    ax.set_title(f"band importance: V(all) {explanation['v_all']:.4f}, V(none) {explanation['v_none']:.4f}"
                 " (numbers: MM-SHAP)", fontsize=9)


def result_figure(result: PhotoZResult, title: str | None = None):
    """A matplotlib Figure: the nine cutouts on the left, the PMF (or the reason there is none) on the right.

    With ``result.calibrated`` the calibrated PMF is drawn beside the raw one; with ``result.explanation``
    a third panel shows the per-band Shapley values (``draw_importance``).
    """
    from matplotlib.figure import Figure

    importance = result.ok and result.explanation is not None
    fig = Figure(figsize=(18.5 if importance else 13, 5.4), dpi=100)
    ratios = [1.0, 1.45, 1.05] if importance else [1.0, 1.45]
    gs = fig.add_gridspec(1, len(ratios), width_ratios=ratios, wspace=0.18 if not importance else 0.22,
                          left=0.02, right=0.98 if not importance else 0.99, top=0.86, bottom=0.11)
    draw_cutouts(fig, gs[0, 0], result)
    if importance:
        draw_importance(fig.add_subplot(gs[0, 2]), result.explanation)
    ax = fig.add_subplot(gs[0, 1])
    if result.ok:
        draw_pmf(ax, result)
        lo68, hi68 = result.intervals[0.68]
        lo95, hi95 = result.intervals[0.95]
        sub = f"z = {result.z_mean:.4f}   68%: [{lo68:.3f}, {hi68:.3f}]   95%: [{lo95:.3f}, {hi95:.3f}]"
        if result.calibrated is not None:
            sub += f"   calibrated z = {result.calibrated['z_mean']:.4f}"
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
