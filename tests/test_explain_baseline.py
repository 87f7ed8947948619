"""sep baselines and Kron photometry on mock cutouts with a planted central galaxy and a planted neighbour."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sep")

from mantis_data.bands import SURVEYS  # noqa: E402
from mantis_data.explain_baseline import (  # noqa: E402
    MASK_SCALE,
    baseline_band,
    baseline_images,
    detect_target,
    kron_flux,
)

SKY, SIGMA = 20.0, 1.0
"""Mock sky level and noise per pixel (image units)."""


def gaussian(n: int, x0: float, y0: float, sigma_px: float, total: float) -> np.ndarray:
    """A round Gaussian galaxy of integrated flux ``total`` centred at (x0, y0) on an (n, n) grid."""
    y, x = np.mgrid[:n, :n]
    return total * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma_px**2)) / (2 * np.pi * sigma_px**2)


def mock_cutout(survey: str, seed: int = 0, central: float = 0.0, neighbour: float = 0.0):
    """A stored-size cutout of ``survey``: noisy flat sky, a central galaxy and a neighbour off-centre."""
    n = SURVEYS[survey].cutout_size
    c = (n - 1) / 2
    s = n / 40.0 if survey == "ps1" else 1.2
    rng = np.random.default_rng(seed)
    img = rng.normal(SKY, SIGMA, (n, n))
    off = (c + 0.35 * n, c - 0.2 * n)
    img += gaussian(n, c + 0.3, c - 0.2, s, central) + gaussian(n, *off, s, neighbour)
    return img.astype(np.float32), off, s


@pytest.mark.parametrize("survey", ["ps1", "galex", "unwise"])
def test_central_galaxy_removed_neighbour_and_outside_untouched(survey):
    total = 4000.0 if survey == "ps1" else 400.0
    img, (nx, ny), s = mock_cutout(survey, seed=1, central=total, neighbour=total)
    base, mask, target = baseline_band(img, survey, rng=7, return_mask=True)
    n = img.shape[0]
    c = (n - 1) / 2
    assert target.found and abs(target.x - c) < 1.5 and abs(target.y - c) < 1.5
    assert base.dtype == img.dtype and base.shape == img.shape
    # every pixel outside the mask is bit-identical
    assert np.array_equal(base[~mask].view(np.uint32), img[~mask].view(np.uint32))
    # the mask is the target ellipse scaled by the survey's r and holds most of the central flux
    assert mask[round(c), round(c)]
    assert np.pi * (MASK_SCALE[survey] * target.b) ** 2 * 0.6 < mask.sum() < np.pi * (MASK_SCALE[survey] * target.a) ** 2 * 1.6
    # central flux removed: the masked pixels' mean is the background's, within 3 sigma of that mean
    m = int(mask.sum())
    assert abs(base[mask].mean() - SKY) < 3 * SIGMA / np.sqrt(m) + 0.05 * SIGMA
    assert img[mask].mean() - SKY > 10 * SIGMA / np.sqrt(m)  # (it was there before)
    assert abs(base[mask].std() - SIGMA) < 0.35 * SIGMA
    # the neighbour is not touched
    yy, xx = np.mgrid[:n, :n]
    near = np.hypot(xx - nx, yy - ny) < 3 * s
    assert near.any() and not (mask & near).any()
    assert np.array_equal(base[near], img[near])


def test_no_target_uses_the_central_disc():
    img, _, _ = mock_cutout("ps1", seed=2, neighbour=4000.0)  # only a neighbour, far from the centre
    base, mask, target = baseline_band(img, "ps1", rng=0, return_mask=True)
    assert not target.found and target.n_sources >= 1
    r = MASK_SCALE["ps1"]
    assert abs(mask.sum() - np.pi * r * r) < 2 * np.pi * r + 4
    n = img.shape[0]
    yy, xx = np.mgrid[:n, :n]
    assert np.all(np.hypot(xx[mask] - (n - 1) / 2, yy[mask] - (n - 1) / 2) <= r + 1)
    assert np.array_equal(base[~mask], img[~mask])


def test_seeded_reproducible_and_zero_bands_stay_zero():
    ps1 = np.stack([mock_cutout("ps1", seed=k, central=3000.0)[0] for k in range(5)])
    galex = np.zeros(SURVEYS["galex"].shape, np.float32)  # no GALEX coverage
    unwise = np.stack([mock_cutout("unwise", seed=10 + k, central=300.0)[0] for k in range(2)])
    a = baseline_images(ps1, galex, unwise, seed=3)
    b = baseline_images(ps1, galex, unwise, seed=3)
    c = baseline_images(ps1, galex, unwise, seed=4)
    for s in ("ps1", "galex", "unwise"):
        assert np.array_equal(a[s], b[s])
        assert a[s].dtype == np.float32
    assert not np.any(a["galex"])
    assert not np.array_equal(a["ps1"], c["ps1"]) and not np.array_equal(a["unwise"], c["unwise"])
    assert np.array_equal(a["ps1"] != ps1, c["ps1"] != ps1)  # same masks, other noise


@pytest.mark.parametrize("survey", ["ps1", "unwise"])
def test_kron_flux_recovers_a_planted_galaxy(survey):
    total = 5000.0 if survey == "ps1" else 500.0
    img, _, _ = mock_cutout(survey, seed=5, central=total)
    flux, forced = kron_flux(img, survey)
    assert not forced
    assert abs(flux - total) < 0.08 * total
    empty, _, _ = mock_cutout(survey, seed=6)
    flux0, forced0 = kron_flux(empty, survey)
    assert forced0 and abs(flux0) < 8 * SIGMA * np.sqrt(np.pi * 16)
    assert kron_flux(np.zeros_like(img), survey) == (0.0, True)


def test_release_samples(demo_release):
    """Real demo-release samples: shapes and dtypes kept, only a central region changed, zero GALEX kept."""
    from mantis_data.loading import make_loader

    loader = make_loader(demo_release, "test", order="sequential", batch_size=8, num_workers=0,
                         images=("galex", "ps1", "unwise"), rank=0, world_size=1)
    batch = next(iter(loader))
    for i in range(4):
        cubes = {s: batch[s][i].numpy() for s in ("galex", "ps1", "unwise")}
        base = baseline_images(cubes["ps1"], cubes["galex"], cubes["unwise"], seed=i)
        for s, cube in cubes.items():
            assert base[s].shape == cube.shape and base[s].dtype == cube.dtype
            changed = base[s] != cube
            if not np.any(cube):
                assert not np.any(base[s])
            n = cube.shape[-1]
            yy, xx = np.nonzero(changed.any(axis=0))
            if len(yy):  # changes stay near the centre (a target or the central disc)
                assert np.all(np.hypot(xx - (n - 1) / 2, yy - (n - 1) / 2) < n / 2)
        assert detect_target(cubes["ps1"][1], "ps1").n_sources >= 0
