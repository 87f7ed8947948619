"""Figures for release cards and evaluation reports, readable at 2 thousand and at 4 million galaxies.

Every function takes plain arrays, draws on a matplotlib ``Figure`` rendered by Agg (no pyplot global
state, safe in threads and workers) and writes one PNG atomically. Densities rather than scatter plots
carry the large numbers; small populations (a survey of 20 galaxies, the outliers) stay visible as their
own panels or as points.

- ``sky_density``: HEALPix counts per square degree, one Mollweide panel per survey (needs ``healpy``).
- ``redshift_histograms``: one panel per survey with its own y scale, so small surveys are not hidden.
- ``zhat_vs_z``: a 2-D density of the point estimate against the true redshift, outliers as points.
- ``pit_histogram``: the PIT density with the uniform line and its expected scatter.
- ``metrics_by_redshift``: NMAD, bias, outlier fraction and CDE loss per redshift bin, with N per bin
  and the CDE loss of a uniform PDF on [0, 1.6] (-0.625) as a reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._io import atomic_path
from .errors import InputDataError
from .metrics import DEFAULT_OUTLIER_THRESHOLD
from .redshift import Z_MAX

UNIFORM_CDE_LOSS = 1.0 / Z_MAX - 2.0 / Z_MAX
"""CDE loss of the uniform PDF on [0, Z_MAX]: integral p^2 dz - 2 p(z) = -1/Z_MAX (-0.625 for Z_MAX = 1.6)."""
MIN_SURVEY_FOR_PIT_CURVE = 500
"""Galaxies a survey needs before its own PIT curve is drawn (below, 20 bins are mostly noise)."""
DPI = 130
MAX_OUTLIER_POINTS = 5000
"""Above this many outliers, z_hat vs z shows them as a (red) density instead of points."""
RA_CENTRE = 180.0
"""RA (deg) at the centre of the sky maps: 12h keeps the SDSS northern cap in one piece."""
RA_TICKS_LON = (-120, -60, 0, 60, 120)
"""Mollweide longitudes (deg) of the RA ticks; RA = RA_CENTRE - longitude: 20h 16h 12h 8h 4h."""


def _figure(**kwargs):
    """A matplotlib Figure rendered by Agg, without pyplot's global state."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise InputDataError("the plots need matplotlib: pip install matplotlib") from exc
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically (no timestamp in the metadata, so rebuilds are identical)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(max_cols, max(n, 1))
    return math.ceil(max(n, 1) / cols), cols


def _groups(survey: np.ndarray | None, n: int) -> list[tuple[str, np.ndarray]]:
    """('all', everything) and then one (name, mask) per survey, largest first."""
    out = [("all", np.ones(n, dtype=bool))]
    if survey is not None:
        survey = np.asarray(survey).astype(str)
        names, counts = np.unique(survey, return_counts=True)
        for name in names[np.argsort(-counts, kind="stable")]:
            out.append((str(name), survey == name))
    return out


def auto_nside(n: int) -> int:
    """HEALPix nside for a sky map of ``n`` galaxies: 8 at ~2,000 (54 deg^2 cells), 128 at 4 million (0.2 deg^2)."""
    k = round(math.log2(max(n, 1)) / 2 - 2.5)
    return 2 ** int(min(max(k, 2), 7))


def _raster(nside: int, step_deg: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The lon/lat raster (cell edges in radians; cell-centre RA and Dec in degrees) a HEALPix map of
    ``nside`` is sampled on for pcolormesh on Mollweide axes: cells of ``step_deg`` degrees, by default
    a quarter of a HEALPix pixel, 0.5 to 2 deg.

    Agg transforms every cell through the Mollweide projection: the fixed 0.5 deg raster drawn before
    (259,200 cells per panel) took ~4 s per sky map of a small release; at nside 8 this one has 16x fewer.
    """
    if step_deg is None:
        pixel_deg = math.degrees(math.sqrt(4 * math.pi / (12 * nside**2)))
        step_deg = min(2.0, max(0.5, pixel_deg / 4))
    n_lon = int(round(360 / step_deg))
    lon = np.linspace(-np.pi, np.pi, n_lon + 1)
    lat = np.linspace(-np.pi / 2, np.pi / 2, n_lon // 2 + 1)
    lon_c, lat_c = np.meshgrid(0.5 * (lon[1:] + lon[:-1]), 0.5 * (lat[1:] + lat[:-1]))
    return lon, lat, np.mod(RA_CENTRE - np.degrees(lon_c), 360.0), np.degrees(lat_c)  # RA grows to the left


def sky_density(
    ra: np.ndarray, dec: np.ndarray, survey: np.ndarray | None, path: str | Path, nside: int | None = None
) -> Path:
    """sky map PNG: HEALPix counts per deg^2 (log colour), all galaxies then one Mollweide panel per survey.

    ``ra``, ``dec`` in degrees (ICRS). RA increases to the left, as on the sky; RA ticks in hours.
    """
    try:
        import healpy as hp
    except ImportError as exc:
        raise InputDataError("the sky map needs healpy: pip install healpy (or 'mantis-data[build]')") from exc
    from matplotlib.colors import LogNorm

    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    groups = _groups(survey, ra.size)
    if len(groups) == 2:  # one survey: the 'all' panel says it all
        groups = groups[:1]
    rows, cols = _grid_shape(len(groups))
    fig = _figure(figsize=(4.2 * cols, 2.3 * rows + 0.6), layout="constrained")
    images, sides, grids = [], [], []
    for _, mask in groups:
        k = nside or auto_nside(int(mask.sum()))  # each panel's resolution follows its own numbers
        lon, lat, ra_c, dec_c = _raster(k)
        counts = np.bincount(hp.ang2pix(k, ra[mask], dec[mask], lonlat=True), minlength=hp.nside2npix(k))
        density = counts / hp.nside2pixarea(k, degrees=True)
        images.append(np.ma.masked_equal(density[hp.ang2pix(k, ra_c, dec_c, lonlat=True)], 0.0))
        sides.append(k)
        grids.append((lon, lat))
    positive = [im.min() for im in images if im.count()]
    vmin = min(positive, default=1.0)
    vmax = max((im.max() for im in images if im.count()), default=vmin * 10)
    norm = LogNorm(vmin=vmin, vmax=max(vmax, vmin * 1.01))
    mesh = None
    for i, ((name, mask), image, k, (lon, lat)) in enumerate(zip(groups, images, sides, grids, strict=True)):
        ax = fig.add_subplot(rows, cols, i + 1, projection="mollweide")
        mesh = ax.pcolormesh(lon, lat, image, norm=norm, cmap="viridis", rasterized=True, shading="flat")
        ax.set_xticks(np.radians(RA_TICKS_LON))
        ax.set_xticklabels(
            [f"{int(h)}h" for h in np.mod(RA_CENTRE - np.asarray(RA_TICKS_LON), 360) / 15], fontsize=7, color="0.3"
        )
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(True, lw=0.3, color="0.6")
        ax.set_title(f"{name}: {int(mask.sum()):,} galaxies (nside {k})", fontsize=9)
    if mesh is not None:
        fig.colorbar(mesh, ax=fig.axes, shrink=0.6, label="galaxies per deg² (HEALPix cells)")
    fig.suptitle("Sky density (ICRS; RA increases to the left, Dec ticks in degrees)", fontsize=10)
    return save_png(fig, path)


def redshift_histograms(z: np.ndarray, survey: np.ndarray | None, path: str | Path, z_max: float = Z_MAX) -> Path:
    """redshift histogram PNG: all galaxies (log counts) then one panel per survey with its own y scale."""
    from matplotlib.ticker import MaxNLocator

    z = np.asarray(z, dtype=np.float64)
    groups = _groups(survey, z.size)
    if len(groups) == 2:
        groups = groups[:1]
    rows, cols = _grid_shape(len(groups))
    fig = _figure(figsize=(3.6 * cols, 2.4 * rows + 0.4), layout="constrained")
    width = 0.02 if z.size >= 5000 else 0.04
    bins = np.arange(0.0, z_max + width / 2, width)
    for i, (name, mask) in enumerate(groups):
        ax = fig.add_subplot(rows, cols, i + 1)
        zi = z[mask]
        ax.hist(zi, bins=bins, color="tab:blue" if i == 0 else "tab:orange", histtype="stepfilled", alpha=0.8)
        if i == 0 and zi.size:
            ax.set_yscale("log")
        else:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        med = float(np.median(zi)) if zi.size else float("nan")
        ax.set_title(f"{name}: {zi.size:,} galaxies, median z {med:.3f}", fontsize=9)
        ax.set_xlim(0, z_max)
        ax.set_xlabel("spectroscopic z", fontsize=8)
        ax.set_ylabel(f"galaxies per {width:g}", fontsize=8)
        ax.tick_params(labelsize=7)
    return save_png(fig, path)


def zhat_vs_z(
    z: np.ndarray,
    z_hat: np.ndarray,
    path: str | Path,
    outlier_threshold: float,
    z_max: float = Z_MAX,
    intervals: tuple[np.ndarray, np.ndarray, np.ndarray, float] | None = None,
) -> Path:
    """z_hat vs z PNG: log-scaled 2-D density of the inliers, outliers (|r| > threshold) drawn as points.

    r = (z_hat - z) / (1 + z); the dashed lines are |r| = threshold. ``intervals``: (indices, low, high,
    level) of a random sample of galaxies whose credible intervals are drawn as vertical bars.
    """
    from matplotlib.colors import LogNorm

    z = np.asarray(z, dtype=np.float64)
    z_hat = np.asarray(z_hat, dtype=np.float64)
    top = max(z_max, float(np.max(z, initial=0.0)))
    r = (z_hat - z) / (1.0 + z)
    out = np.abs(r) > outlier_threshold
    fig = _figure(figsize=(6 if out.sum() <= MAX_OUTLIER_POINTS else 7.6, 5.4), layout="constrained")
    ax = fig.add_subplot()
    n_cells = 200 if z.size >= 100_000 else 80
    bins = np.linspace(0.0, top, n_cells + 1)
    h, xe, ye = np.histogram2d(z[~out], z_hat[~out], bins=[bins, bins])
    if h.max() > 0:
        mesh = ax.pcolormesh(xe, ye, np.ma.masked_equal(h.T, 0), norm=LogNorm(vmin=1, vmax=h.max()),
                             cmap="viridis", rasterized=True)
        fig.colorbar(mesh, ax=ax, shrink=0.82, label=f"inlier galaxies per cell ({top / n_cells:.3f} × {top / n_cells:.3f})")
    label = f"outliers |r| > {outlier_threshold:g}: {int(out.sum()):,} ({100 * out.mean() if z.size else 0:.1f}%)"
    if out.sum() <= MAX_OUTLIER_POINTS:
        ax.scatter(z[out], z_hat[out], s=9.0, c="tab:red", lw=0, rasterized=True, label=label)
    else:  # too many to see as points: their own density, in red
        ho, _, _ = np.histogram2d(z[out], z_hat[out], bins=[bins, bins])
        red = ax.pcolormesh(xe, ye, np.ma.masked_equal(ho.T, 0), norm=LogNorm(vmin=1, vmax=ho.max()),
                            cmap="Reds", rasterized=True)
        fig.colorbar(red, ax=ax, shrink=0.82, label="outlier galaxies per cell")
        ax.plot([], [], "s", color="tab:red", label=label)
    if intervals is not None and len(intervals[0]):
        idx, lo, hi, level = intervals
        ax.vlines(z[idx], lo, hi, color="tab:orange", lw=0.7, alpha=0.8)
        ax.plot(z[idx], z_hat[idx], "o", ms=2.5, color="tab:orange",
                label=f"{len(idx)} random galaxies, {level:.0%} interval")
    zz = np.array([0.0, top])
    ax.plot(zz, zz, color="k", lw=0.8, label="z hat = z")
    ax.plot(zz, zz - outlier_threshold * (1 + zz), color="k", lw=0.6, ls="--")
    ax.plot(zz, zz + outlier_threshold * (1 + zz), color="k", lw=0.6, ls="--")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_aspect("equal")
    ax.set_xlabel("z (spectroscopic)")
    ax.set_ylabel("z hat (PMF expectation)")
    ax.set_title(f"{z.size:,} galaxies", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return save_png(fig, path)


def pit_histogram(
    pit: np.ndarray, survey: np.ndarray | None, path: str | Path, bins: int = 20, ks_text: str | None = None
) -> Path:
    """PIT histogram PNG: density (1 = calibrated), the uniform line with its +-1 sigma Poisson band.

    Per-survey curves are drawn only for surveys with at least MIN_SURVEY_FOR_PIT_CURVE galaxies.
    """
    pit = np.asarray(pit, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    curves = [(name, mask) for name, mask in _groups(survey, pit.size)[1:]
              if MIN_SURVEY_FOR_PIT_CURVE <= mask.sum() < pit.size]
    fig = _figure(figsize=(7.6 if curves else 6, 4), layout="constrained")
    ax = fig.add_subplot()
    counts, _ = np.histogram(np.clip(pit, 0.0, 1.0), bins=edges)
    n = max(int(counts.sum()), 1)
    ax.bar(edges[:-1], counts / n * bins, width=np.diff(edges), align="edge", color="0.8", edgecolor="0.45",
           label=f"all ({pit.size:,})")
    sigma = math.sqrt(bins / n) if n else 0.0
    ax.axhspan(1 - sigma, 1 + sigma, color="k", alpha=0.12, lw=0, label="uniform ± 1σ (counting noise)")
    ax.axhline(1.0, color="k", lw=1.0)
    for name, mask in curves:
        c, _ = np.histogram(np.clip(pit[mask], 0.0, 1.0), bins=edges)
        ax.stairs(c / max(c.sum(), 1) * bins, edges, lw=1.2, label=f"{name} ({int(mask.sum()):,})")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("PIT = CDF(z spectroscopic)")
    ax.set_ylabel("density (1 = calibrated)")
    ax.set_title("PIT" + (f"; KS distance {ks_text}" if ks_text else ""), fontsize=10)
    if curves:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=f"surveys ≥ {MIN_SURVEY_FOR_PIT_CURVE}")
    else:
        ax.legend(fontsize=7, loc="lower center")
    return save_png(fig, path)


def metrics_by_redshift(rows: Sequence, edges: Sequence[float], path: str | Path) -> Path:
    """Per-redshift-bin PNG: NMAD, bias, outlier fraction, CDE loss with bootstrap errors, and N per bin.

    ``rows``: one ``mantis_data.metrics.MetricsRow`` per bin of ``edges`` (same order).
    """
    edges = np.asarray(edges, dtype=np.float64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    half = 0.5 * np.diff(edges)
    n = np.array([r.n for r in rows], dtype=np.int64)
    ok = n > 0
    fig = _figure(figsize=(9, 7.5), layout="constrained")
    axes = fig.subplot_mosaic(
        [["n_left", "n_right"], ["nmad", "bias"], ["outlier_fraction", "cde_loss"]], sharex=True, height_ratios=[0.55, 1, 1]
    )
    threshold = rows[0].outlier_threshold if rows else DEFAULT_OUTLIER_THRESHOLD
    panels = [
        ("nmad", 1e-2, "NMAD (×10⁻²)"),
        ("bias", 1e-2, "bias (×10⁻²), r = (ẑ − z)/(1+z)"),
        ("outlier_fraction", 1.0, f"η (% with |r| > {threshold:g})"),
        ("cde_loss", 1.0, "CDE loss (lower is better)"),
    ]
    for name, scale, label in panels:
        ax = axes[name]
        v = np.array([getattr(r, name).value for r in rows], dtype=float) / scale
        e = np.array([getattr(r, name).error for r in rows], dtype=float) / scale
        ax.errorbar(centres[ok], v[ok], xerr=half[ok], yerr=np.nan_to_num(e[ok]), fmt="o", ms=3.5, capsize=2)
        if name == "bias":
            ax.axhline(0.0, color="k", lw=0.8)
        if name == "cde_loss":
            ax.axhline(UNIFORM_CDE_LOSS, color="tab:red", lw=0.8, ls="--",
                       label=f"uniform PDF on [0, {Z_MAX:g}] ({UNIFORM_CDE_LOSS:.3f})")
            ax.legend(fontsize=7)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7, labelbottom=name in ("outlier_fraction", "cde_loss"))
        if name in ("outlier_fraction", "cde_loss"):
            ax.set_xlabel("z (spectroscopic)", fontsize=8)
    for key in ("n_left", "n_right"):  # the counts above each column, aligned with its panels
        ax = axes[key]
        ax.bar(edges[:-1], n, width=np.diff(edges), align="edge", color="0.75", edgecolor="0.4")
        if ok.any() and n[ok].min() * 50 < n.max():
            ax.set_yscale("log")
        ax.set_ylim(top=n.max(initial=1) * (4 if ax.get_yscale() == "log" else 1.3))
        for x, k in zip(centres, n, strict=True):
            ax.annotate(f"{k:,}", (x, max(k, 1)), ha="center", va="bottom", fontsize=6.5)
        ax.set_ylabel("N per bin", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"Metrics per redshift bin ({int(n.sum()):,} galaxies; error bars: bootstrap σ)", fontsize=10)
    return save_png(fig, path)
