"""The report and card figures: they render at small and awkward sizes, and their reference lines are right."""

from __future__ import annotations

import numpy as np
import pytest

from mantis_data import plots
from mantis_data.metrics import cde_loss, metrics_table
from mantis_data.redshift import GRID, N_BINS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


def test_uniform_cde_reference_equals_the_metric_of_a_uniform_pmf():
    """The dashed line of the per-bin plot is the CDE loss the metrics module gives a flat PMF."""
    z = np.random.default_rng(0).uniform(0.01, 1.55, 500)
    flat = np.full((z.size, N_BINS), 1.0 / N_BINS, dtype=np.float32)
    assert cde_loss(flat, z) == pytest.approx(plots.UNIFORM_CDE_LOSS, abs=1e-9)
    assert plots.UNIFORM_CDE_LOSS == pytest.approx(-0.625)


def test_auto_nside_grows_with_the_sample():
    assert plots.auto_nside(2_000) == 8
    assert plots.auto_nside(4_400_000) == 128
    assert plots.auto_nside(1) == 4
    sides = [plots.auto_nside(n) for n in (10, 1e3, 1e4, 1e5, 1e6, 1e7)]
    assert sides == sorted(sides)


@pytest.mark.parametrize("n", [1, 7, 3000])
def test_every_figure_renders(tmp_path, n):
    rng = np.random.default_rng(n)
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-30, 80, n)
    survey = rng.choice(["SDSS", "DESI", "VVDS"], n, p=[0.8, 0.19, 0.01])
    z = rng.uniform(0.01, 1.5, n)
    z_hat = np.clip(z + rng.normal(0, 0.1, n), 0, 1.6)
    out = [
        plots.sky_density(ra, dec, survey, tmp_path / "sky.png"),
        plots.redshift_histograms(z, survey, tmp_path / "z.png"),
        plots.zhat_vs_z(z, z_hat, tmp_path / "zhat.png", 0.15),
        plots.pit_histogram(rng.uniform(0, 1, n), survey, tmp_path / "pit.png", ks_text="0.1"),
    ]
    sigma = 0.05
    pmf = np.exp(-0.5 * ((GRID[None] - z_hat[:, None]) / sigma) ** 2)
    pmf = (pmf / pmf.sum(1, keepdims=True)).astype(np.float32)
    edges = (0.0, 0.4, 0.8, 1.2, 1.6)
    masks = {f"{a}-{b}": (z >= a) & (z < b) for a, b in zip(edges[:-1], edges[1:], strict=True)}
    rows = [r for r in metrics_table(z, pmf, masks=masks, B=5, seed=0) if r.name in masks]
    out.append(plots.metrics_by_redshift(rows, edges, tmp_path / "bins.png"))
    assert all(_is_png(p) for p in out), out
    assert not list(tmp_path.glob(".*tmp*")), "a temporary file was left behind"


def test_many_outliers_become_a_density(tmp_path):
    """Past MAX_OUTLIER_POINTS the outliers are drawn as a second density (the figure gets a second colour bar)."""
    rng = np.random.default_rng(1)
    n = 3 * plots.MAX_OUTLIER_POINTS
    z = rng.uniform(0.01, 1.5, n)
    z_hat = rng.uniform(0, 1.6, n)  # mostly outliers
    small = plots.zhat_vs_z(z[:100], z_hat[:100], tmp_path / "few.png", 0.15)
    large = plots.zhat_vs_z(z, z_hat, tmp_path / "many.png", 0.15)
    from PIL import Image

    assert Image.open(large).size[0] > Image.open(small).size[0]
