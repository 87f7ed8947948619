"""Transforms: the released model's preset against a direct numpy computation and torchvision, geometry invariants."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mantis_data.bands import SURVEYS
from mantis_data.errors import MantisDataError
from mantis_data.transforms import (
    ABLATIONS,
    PAPER_EARLY,
    PAPER_LATE,
    AsinhScale,
    AugmentParams,
    LinearScale,
    Transform,
    crop_pixels,
    paper_transform,
    preset_for,
)

STORED = {s: SURVEYS[s].bands for s in ("galex", "ps1", "unwise")}
RELEASED_ORDER = ("NUV", "FUV", "g", "r", "i", "z", "y", "W1", "W2")


def random_batch(n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Linear-flux batch with negative noise, faint and bright pixels in every survey."""
    rng = np.random.default_rng(seed)
    out = {}
    for s, scale in (("galex", 0.03), ("ps1", 300.0), ("unwise", 40.0)):
        shape = (n, len(STORED[s]), SURVEYS[s].cutout_size, SURVEYS[s].cutout_size)
        out[s] = torch.from_numpy((rng.normal(0.2, 1.0, shape) * scale).astype(np.float32))
    return out


def varied(n: int, seed: int) -> AugmentParams:
    """Augmentation parameters drawn per galaxy (so one batch covers many angles and flip pairs)."""
    return Transform(replace(PAPER_EARLY, augment_per="galaxy")).sample_params(n, torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------------
# An independent numpy computation of the paper's formulas
# --------------------------------------------------------------------------------------------------


def np_scale(survey: str, x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    if survey == "galex":
        return np.clip(x / 0.05, 0.0, 1.0)
    alpha, q = (0.01, 8.0) if survey == "ps1" else (0.1, 6.0)
    y = np.arcsinh(alpha * q * x) / q
    return np.where(y < 0, 0.0, y)


def np_rotate_flip_crop(img: np.ndarray, angle_deg: float, hflip: bool, vflip: bool, k: int) -> np.ndarray:
    """Nearest-neighbour rotation about the centre (counter-clockwise as displayed, row 0 on top, empty = 0),
    then horizontal / vertical flips, then a centre crop of k pixels."""
    c_, n, _ = img.shape
    cen = (n - 1) / 2.0
    top = int(round((n - k) / 2.0))
    r, c = np.meshgrid(np.arange(top, top + k), np.arange(top, top + k), indexing="ij")
    r = (n - 1 - r) if vflip else r
    c = (n - 1 - c) if hflip else c
    x, y = c - cen, r - cen
    t = np.deg2rad(angle_deg)
    xs = np.cos(t) * x - np.sin(t) * y + cen
    ys = np.sin(t) * x + np.cos(t) * y + cen
    si, sj = np.floor(ys + 0.5).astype(int), np.floor(xs + 0.5).astype(int)
    ok = (si >= 0) & (si < n) & (sj >= 0) & (sj < n)
    out = np.zeros((c_, k, k))
    out[:, ok] = img[:, si[ok], sj[ok]]
    return out


def np_resize_bilinear(img: np.ndarray, g: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres and clamped edges (what antialiasing reduces to when enlarging)."""
    k = img.shape[-1]
    src = np.clip((np.arange(g) + 0.5) * (k / g) - 0.5, 0, k - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, k - 1)
    w = src - i0
    rows = img[:, i0, :] * (1 - w)[None, :, None] + img[:, i1, :] * w[None, :, None]
    return rows[:, :, i0] * (1 - w)[None, None, :] + rows[:, :, i1] * w[None, None, :]


def np_reference(batch: dict, params: AugmentParams, fusion: str, train: bool = True) -> dict[str, np.ndarray]:
    crops = {"galex": 22, "ps1": 120, "unwise": 22} if fusion == "early" else {"galex": 32, "ps1": 120, "unwise": 32}
    n = batch["ps1"].shape[0]
    per_band: list[dict[str, np.ndarray]] = []
    for i in range(n):
        bands = {}
        for s in ("galex", "ps1", "unwise"):
            img = np_scale(s, batch[s][i].numpy())
            angle, hf, vf = (float(params.angle_deg[i]), bool(params.hflip[i]), bool(params.vflip[i])) if train else (0.0, False, False)
            img = np_rotate_flip_crop(img, angle, hf, vf, crops[s])
            if fusion == "early" and crops[s] != 120:
                img = np_resize_bilinear(img, 120)
            for b, plane in zip(STORED[s], img, strict=True):
                bands[b] = plane
        per_band.append(bands)
    if fusion == "early":
        return {"image": np.stack([np.stack([bands[b] for b in RELEASED_ORDER]) for bands in per_band])}
    out = {}
    for s in ("galex", "ps1", "unwise"):
        order = [b for b in RELEASED_ORDER if b in STORED[s]]
        out[s] = np.stack([np.stack([bands[b] for b in order]) for bands in per_band])
    return out


# --------------------------------------------------------------------------------------------------


def test_preset_is_the_released_model():
    c = PAPER_EARLY
    assert c.fusion == "early" and c.channels == RELEASED_ORDER
    assert c.scaling["ps1"] == AsinhScale(alpha=0.01, q=8.0, floor=0.0)
    assert c.scaling["unwise"] == AsinhScale(alpha=0.1, q=6.0, floor=0.0)
    assert c.scaling["galex"] == LinearScale(scale=0.05, lo=0.0, hi=1.0)
    assert dict(c.crop) == {"galex": 22, "ps1": 120, "unwise": 22} and c.grid == 120
    assert c.rotate and c.hflip_p == c.vflip_p == 0.5 and c.antialias
    assert c.crop["ps1"] * SURVEYS["ps1"].pixel_scale_arcsec == 30.0
    late = PAPER_LATE
    assert late.fusion == "late" and dict(late.crop) == {"galex": None, "ps1": 120, "unwise": None}
    assert late.scaling == c.scaling and late.channels == c.channels
    assert Transform(PAPER_EARLY).output_shapes() == {"image": (9, 120, 120)}
    assert Transform(PAPER_LATE).output_shapes() == {"galex": (2, 32, 32), "ps1": (5, 120, 120), "unwise": (2, 32, 32)}


@pytest.mark.parametrize("fusion", ["early", "late"])
@pytest.mark.parametrize("train", [True, False])
def test_preset_equals_numpy_formulas(fusion, train):
    batch = random_batch(4, seed=1)
    t = paper_transform(fusion, train=train)
    params = varied(4, 1234)
    if train:
        assert params.hflip.any() or params.vflip.any()
    out = t(batch, params)
    ref = np_reference(batch, params, fusion, train)
    assert set(ref) <= set(out)
    for key, want in ref.items():
        got = out[key].numpy()
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6, err_msg=key)
    assert "ps1" not in out if fusion == "early" else "image" not in out


def test_preset_matches_torchvision_pipeline_of_the_released_code():
    """The released augment_fn: torchvision rotate (nearest, fill 0), hflip, vflip, CenterCrop, Resize(antialias)."""
    tvf = pytest.importorskip("torchvision.transforms.functional")
    from torchvision.transforms import InterpolationMode

    batch = random_batch(6, seed=2)
    t = paper_transform("early")
    params = varied(6, 7)
    out = t(batch, params)["image"]
    for i in range(6):
        g, ps, u = (torch.from_numpy(np_scale(s, batch[s][i].numpy())).float() for s in ("galex", "ps1", "unwise"))
        g = g[[1, 0]]  # the released cubes are NUV first
        imgs = [tvf.rotate(v, float(params.angle_deg[i]), interpolation=InterpolationMode.NEAREST) for v in (g, ps, u)]
        if params.hflip[i]:
            imgs = [tvf.hflip(v) for v in imgs]
        if params.vflip[i]:
            imgs = [tvf.vflip(v) for v in imgs]
        g, ps, u = tvf.center_crop(imgs[0], [22, 22]), tvf.center_crop(imgs[1], [120, 120]), tvf.center_crop(imgs[2], [22, 22])
        g, u = tvf.resize(g, [120, 120], antialias=True), tvf.resize(u, [120, 120], antialias=True)
        torch.testing.assert_close(out[i], torch.cat([g, ps, u]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_constant_image_stays_constant(fusion):
    values = {"galex": 0.02, "ps1": 50.0, "unwise": 10.0}
    batch = {s: torch.full((5, len(STORED[s]), SURVEYS[s].cutout_size, SURVEYS[s].cutout_size), v) for s, v in values.items()}
    t = paper_transform(fusion, train=True)
    out = t(batch, varied(5, 3))
    scaled = {b: float(np_scale(s, np.array(values[s]))) for s in values for b in STORED[s]}
    if fusion == "early":
        for ch, b in enumerate(RELEASED_ORDER):
            np.testing.assert_allclose(out["image"][:, ch].numpy(), scaled[b], rtol=1e-6)
    else:
        # the uncropped 32 x 32 GALEX and unWISE lose their corners to the rotation: constant inside the circle
        for s in values:
            img = out[s].numpy()
            n = img.shape[-1]
            yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
            inside = np.hypot(yy, xx) < (SURVEYS[s].cutout_size - 1) / 2  # every crop pixel for PS1
            assert inside.all() == (s == "ps1")
            for ch, b in enumerate([b for b in RELEASED_ORDER if b in STORED[s]]):
                np.testing.assert_allclose(img[:, ch][:, inside], scaled[b], rtol=1e-6)


def gaussian_batch(n: int, offset: tuple[float, float] = (0.0, 0.0)) -> dict[str, torch.Tensor]:
    """A round point source at the image centre (+ offset in pixels, rows down) of every band."""
    out = {}
    for s, sigma, peak in (("galex", 1.5, 0.04), ("ps1", 4.0, 100.0), ("unwise", 1.2, 30.0)):
        size = SURVEYS[s].cutout_size
        yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
        img = peak * np.exp(-((yy - offset[0]) ** 2 + (xx - offset[1]) ** 2) / (2 * sigma**2))
        out[s] = torch.from_numpy(np.broadcast_to(img, (n, len(STORED[s]), size, size)).astype(np.float32).copy())
    return out


def centroid(img: np.ndarray) -> tuple[float, float]:
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    return float((yy * img).sum() / img.sum()), float((xx * img).sum() / img.sum())


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_point_source_stays_centred(fusion):
    t = paper_transform(fusion, train=True)
    batch = gaussian_batch(8)
    params = varied(8, 11)
    assert params.hflip.any() and params.vflip.any() and not params.hflip.all()
    out = t(batch, params)
    if fusion == "early":  # (channel block, half an input pixel in output pixels)
        planes = [(out["image"][:, :2], 0.5 * 120 / 22), (out["image"][:, 2:7], 0.5), (out["image"][:, 7:], 0.5 * 120 / 22)]
    else:
        planes = [(out[s], 0.5) for s in ("galex", "ps1", "unwise")]
    for img, tol in planes:
        g = img.shape[-1]
        for plane in img.reshape(-1, g, g).numpy():
            cy, cx = centroid(plane)
            assert abs(cy - (g - 1) / 2) < 1e-3 and abs(cx - (g - 1) / 2) < 1e-3
            peak = np.unravel_index(plane.argmax(), plane.shape)
            assert abs(peak[0] - (g - 1) / 2) <= tol + 0.5 and abs(peak[1] - (g - 1) / 2) <= tol + 0.5


def test_rotation_is_counter_clockwise_and_flips_mirror():
    """A source 20 PS1 pixels above the centre goes to the left of it after +90 degrees; flips mirror it."""
    t = Transform(replace(PAPER_LATE, scaling={s: LinearScale(1.0, None, None) for s in ("galex", "ps1", "unwise")}))
    batch = gaussian_batch(3, offset=(-20.0, 0.0))
    params = AugmentParams(
        torch.tensor([90.0, 90.0, 0.0], dtype=torch.float64), torch.tensor([False, True, False]), torch.tensor([False, False, True])
    )
    ps1 = t(batch, params)["ps1"][:, 0].numpy()
    c = 59.5
    np.testing.assert_allclose(centroid(ps1[0]), (c, c - 20.0), atol=0.05)  # rotated: left of centre
    np.testing.assert_allclose(centroid(ps1[1]), (c, c + 20.0), atol=0.05)  # then mirrored left-right
    np.testing.assert_allclose(centroid(ps1[2]), (c + 20.0, c), atol=0.05)  # no rotation, mirrored up-down


def test_crop_overrides_and_30_arcsec_everywhere():
    cfg = PAPER_EARLY.with_crop_arcsec(30)
    assert dict(cfg.crop) == {"galex": crop_pixels(30, "galex"), "ps1": 120, "unwise": crop_pixels(30, "unwise")}
    assert dict(cfg.crop) == {"galex": 20, "ps1": 120, "unwise": 11}
    assert dict(PAPER_EARLY.crop) == {"galex": 22, "ps1": 120, "unwise": 22}  # the preset is untouched
    t = Transform(cfg)
    batch = random_batch(3, seed=4)
    params = varied(3, 5)
    out = t(batch, params)["image"]
    assert out.shape == (3, 9, 120, 120)
    # an odd margin (32 - 11 = 21) is split like torchvision's CenterCrop: round(21 / 2) = 10 on top
    ref = np_rotate_flip_crop(np_scale("unwise", batch["unwise"][0].numpy()), float(params.angle_deg[0]),
                              bool(params.hflip[0]), bool(params.vflip[0]), 11)
    np.testing.assert_allclose(out[0, 7:9].numpy(), np_resize_bilinear(ref, 120), rtol=1e-5, atol=2e-6)
    late = Transform(replace(PAPER_LATE, crop={"galex": 20, "ps1": 100, "unwise": 11}), train=False)
    shapes = {k: tuple(v.shape) for k, v in late(random_batch(2)).items()}
    assert shapes == {"galex": (2, 2, 20, 20), "ps1": (2, 5, 100, 100), "unwise": (2, 2, 11, 11)}
    big = Transform(replace(PAPER_EARLY, resize=64), train=False)
    assert big(random_batch(2))["image"].shape == (2, 9, 64, 64)
    with pytest.raises(MantisDataError):
        PAPER_EARLY.with_crop_arcsec(60)  # wider than the stored GALEX cutout


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_band_ablations(name):
    batch = random_batch(2, seed=6)
    full = paper_transform("early", train=False)(batch)["image"]
    cfg = PAPER_EARLY.with_bands(name)
    t = Transform(cfg, train=False)
    kept = [b for b in RELEASED_ORDER if b in ABLATIONS[name]]
    assert cfg.kept_channels == tuple(kept)
    need = {s for s in ("galex", "ps1", "unwise") if any(b in STORED[s] for b in kept)}
    assert set(t.surveys) == need
    out = t({s: batch[s] for s in need})["image"]  # the other surveys are not even needed
    torch.testing.assert_close(out, full[:, [RELEASED_ORDER.index(b) for b in kept]])
    zero = Transform(PAPER_EARLY.with_bands(name, ablate="zero"), train=False)(batch)["image"]
    assert zero.shape == full.shape
    for ch, b in enumerate(RELEASED_ORDER):
        if b in kept:
            torch.testing.assert_close(zero[:, ch], full[:, ch])
        else:
            assert not zero[:, ch].any()
    late = Transform(PAPER_LATE.with_bands(name), train=False)(batch)
    assert {k for k in late if k in STORED} == need


def test_seeded_augmentation_is_reproducible():
    t = paper_transform("early")
    batch = random_batch(4, seed=8)
    a = t({**batch, "aug_seed": torch.tensor(42)})["image"]
    b = t({**batch, "aug_seed": torch.tensor(42)})["image"]
    c = t({**batch, "aug_seed": torch.tensor(43)})["image"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    p = varied(4000, 0)
    assert 0 <= float(p.angle_deg.min()) and float(p.angle_deg.max()) < 360
    assert abs(float(p.hflip.float().mean()) - 0.5) < 0.05 and abs(float(p.vflip.float().mean()) - 0.5) < 0.05
    frozen = Transform(replace(PAPER_EARLY, rotate=False, hflip_p=0.0, vflip_p=0.0))
    assert not frozen.augmenting


def test_scalings_edge_values():
    x = torch.tensor([-5.0, 0.0, 1e-6, 3.0, 1e6, 1e30])
    ps = PAPER_EARLY.scaling["ps1"]
    got = ps.apply_(x.clone()).numpy()
    assert got[0] == 0 and got[1] == 0 and np.all(np.isfinite(got))
    # float32 log(v + sqrt(v^2 + 1)): absolute error ~1e-8 near 0, relative 1e-6 above
    np.testing.assert_allclose(got[2:5], np.arcsinh(0.08 * x.numpy()[2:5].astype(np.float64)) / 8, rtol=1e-6, atol=1e-7)
    t = Transform(PAPER_LATE, train=False)
    batch = random_batch(1)
    batch["ps1"][0, 0, 80, 80] = 1e30
    assert torch.isfinite(t(batch)["ps1"]).all()
    g = LinearScale(0.05).apply_(torch.tensor([-1.0, 0.01, 0.2]))
    np.testing.assert_allclose(g.numpy(), [0.0, 0.2, 1.0], rtol=1e-6)
    signed = AsinhScale(0.01, 8.0, floor=None).apply_(torch.tensor([-100.0, 100.0]))
    np.testing.assert_allclose(signed.numpy(), np.arcsinh([-8.0, 8.0]) / 8, rtol=1e-6)


def test_bad_configs_and_inputs_raise_clear_errors():
    with pytest.raises(MantisDataError, match="fusion"):
        replace(PAPER_EARLY, fusion="middle")
    with pytest.raises(MantisDataError, match="channels"):
        replace(PAPER_EARLY, channels=("g",))
    with pytest.raises(MantisDataError, match="ablation"):
        PAPER_EARLY.with_bands("optical+xray")
    with pytest.raises(MantisDataError, match="no \\['galex'\\]"):
        paper_transform("early")({k: v for k, v in random_batch(1).items() if k != "galex"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("fusion", ["early", "late"])
def test_gpu_equals_cpu(fusion):
    t = paper_transform(fusion)
    batch = random_batch(8, seed=9)
    params = varied(8, 10)
    cpu = t(batch, params)
    gpu = t({k: v.cuda() for k, v in batch.items()}, params)
    for k in cpu:
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], rtol=1e-5, atol=1e-5)


def test_batched_path_equals_the_per_sample_cpu_path(monkeypatch):
    """The batched gather and torch.asinh (what runs on a GPU) give what the CPU's per-sample path gives."""
    import mantis_data.transforms as T

    batch = random_batch(4, seed=12)
    t = paper_transform("early")
    params = varied(4, 2)
    want = t(batch, params)["image"]
    monkeypatch.setattr(T, "_CACHE_FRIENDLY_BYTES", 1 << 40)
    torch.testing.assert_close(Transform(PAPER_EARLY)(batch, params)["image"], want, rtol=1e-6, atol=1e-6)
    x = torch.linspace(-50, 5000, 101, dtype=torch.float64)
    scale = PAPER_EARLY.scaling["ps1"]
    torch.testing.assert_close(scale.apply_(x.clone()).float(), scale.apply_(x.float()), rtol=1e-6, atol=1e-7)


def test_any_channel_order():
    order = ("g", "NUV", "r", "i", "W1", "z", "y", "FUV", "W2")
    batch = random_batch(3, seed=13)
    params = varied(3, 4)
    mine = Transform(replace(PAPER_EARLY, channels=order))(batch, params)["image"]
    paper = Transform(PAPER_EARLY)(batch, params)["image"]
    for i, band in enumerate(order):
        torch.testing.assert_close(mine[:, i], paper[:, RELEASED_ORDER.index(band)], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_paper_preset_draws_one_angle_and_one_flip_pair_per_batch(fusion):
    """The released augment_fn: one angle and one (hflip, vflip) pair for every image of a batch."""
    t = paper_transform(fusion)
    assert t.config.augment_per == "batch"
    draws = [t.params_for({"aug_seed": torch.tensor(seed)}, 16) for seed in range(40)]
    for p in draws:
        assert p.angle_deg.unique().numel() == 1 and p.hflip.unique().numel() == 1 and p.vflip.unique().numel() == 1
    # across batches the draws still vary: several angles, both states of each flip
    assert len({float(p.angle_deg[0]) for p in draws}) == 40
    assert {bool(p.hflip[0]) for p in draws} == {True, False} and {bool(p.vflip[0]) for p in draws} == {True, False}
    # the same galaxy four times in a batch comes out four times the same (all surveys)
    one = random_batch(1, seed=21)
    batch = {s: v.expand(4, *v.shape[1:]).contiguous() for s, v in one.items()}
    for seed in range(6):
        out = t({**batch, "aug_seed": torch.tensor(seed)})
        for key in ("image",) if fusion == "early" else ("galex", "ps1", "unwise"):
            assert all(torch.equal(out[key][0], out[key][i]) for i in range(1, 4)), key
    # per galaxy (the explicit option) the four copies differ
    per_galaxy = Transform(replace(t.config, augment_per="galaxy"))
    assert per_galaxy.params_for({"aug_seed": torch.tensor(0)}, 16).angle_deg.unique().numel() == 16
    out = per_galaxy({**batch, "aug_seed": torch.tensor(0)})
    key = "image" if fusion == "early" else "ps1"
    assert not torch.equal(out[key][0], out[key][1])
    with pytest.raises(MantisDataError, match="augment_per"):
        replace(PAPER_EARLY, augment_per="sample")


@pytest.mark.parametrize("fusion", ["early", "late"])
@pytest.mark.parametrize("train", [True, False])
def test_non_finite_pixels_are_zeroed_by_the_transform(fusion, train):
    """NaN and +-inf straight from a user's array act as 0 flux (not as NaN, nor as a saturated GALEX pixel)."""
    batch = random_batch(3, seed=22)
    dirty = {s: v.clone() for s, v in batch.items()}
    clean = {s: v.clone() for s, v in batch.items()}
    rng = np.random.default_rng(5)
    for s, v in dirty.items():
        n = v.shape[-1]
        for bad in (float("nan"), float("inf"), float("-inf")):
            lo, hi = n // 2 - 6, n // 2 + 6  # inside every crop
            idx = (rng.integers(0, 3, 20), rng.integers(0, v.shape[1], 20), rng.integers(lo, hi, 20), rng.integers(lo, hi, 20))
            v[idx] = bad
            clean[s][idx] = 0.0
    t = paper_transform(fusion, train=train)
    for seed in (0, 1):
        got = t({**dirty, "aug_seed": torch.tensor(seed)})
        want = t({**clean, "aug_seed": torch.tensor(seed)})
        for key in ("image",) if fusion == "early" else ("galex", "ps1", "unwise"):
            assert torch.isfinite(got[key]).all(), key
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
    assert torch.isnan(dirty["ps1"]).any()  # the caller's arrays are not modified


def test_preset_for_a_checkpoints_input_settings():
    """One reading of a checkpoint's data_config, shared by training, photoz and explain."""
    assert preset_for({}) == PAPER_EARLY.with_bands("all")
    opt = preset_for({"fusion": "late", "bands": "optical+ir", "ps1_crop": 48})
    assert opt.fusion == "late" and opt.crop["ps1"] == 48 and set(opt.bands) == set(ABLATIONS["optical+ir"])
    assert opt.crop["galex"] == PAPER_LATE.crop["galex"] and opt.resize == PAPER_LATE.resize
    assert preset_for({"fusion": "early", "bands": "all", "resize": 48}).resize == 48
    with pytest.raises(MantisDataError, match="early fusion only"):
        preset_for({"fusion": "late", "bands": "all", "resize": 48})
    with pytest.raises(MantisDataError, match="unknown ablation"):
        preset_for({"bands": "radio"})
