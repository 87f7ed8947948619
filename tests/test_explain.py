"""Exact Shapley values over bands and surveys: known answers, efficiency, the shap package, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("sep")

from test_explain_baseline import mock_cutout  # noqa: E402

from mantis_data.bands import BANDS, SURVEY_ORDER, SURVEYS  # noqa: E402
from mantis_data.explain import ExplainModel, _inputs, _value_fn, explain_galaxy, wrap_model  # noqa: E402
from mantis_data.explain_baseline import baseline_images  # noqa: E402
from mantis_data.explain_shapley import (  # noqa: E402
    coalition_matrix,
    coalition_values,
    mm_shap,
    shapley_from_values,
)

TINY = {"depths": [1, 1, 1, 1], "dims": [16, 32, 64, 128]}
NAMES = [b.name for b in BANDS]


def tiny_model(fusion: str = "early", seed: int = 0) -> ExplainModel:
    """A random tiny ConvNeXt (48 px grid), its head scaled up so the point estimate reacts to the inputs."""
    from mantis_data.models import ModelConfig, build_model
    from mantis_data.transforms import PAPER_EARLY, PAPER_LATE, Transform

    torch.manual_seed(seed)
    if fusion == "early":
        cfg = ModelConfig(fusion="early", backbone="convnext_atto", backbone_kwargs=TINY)
        t = Transform(replace(PAPER_EARLY, resize=48), train=False)
    else:
        cfg = ModelConfig(fusion="late", backbone="convnext_atto", aux_backbone="convnext_atto",
                          backbone_kwargs=TINY, aux_backbone_kwargs=TINY)
        t = Transform(replace(PAPER_LATE, crop={**PAPER_LATE.crop, "ps1": 48}), train=False)
    model = build_model(cfg)
    with torch.no_grad():
        model.fc1.weight.mul_(30.0)
    return wrap_model(model, t)


def mock_sample(seed: int = 0):
    """Mock cubes with a central galaxy of a different brightness in every band, and a neighbour."""
    rng = np.random.default_rng(seed)
    cubes = {}
    for s in SURVEY_ORDER:
        planes = []
        for k in range(len(SURVEYS[s].bands)):
            total = float(rng.uniform(1000, 6000) if s == "ps1" else rng.uniform(150, 600))
            planes.append(mock_cutout(s, seed=seed * 100 + len(cubes) * 10 + k, central=total, neighbour=total)[0])
        cubes[s] = np.stack(planes)
    return cubes


def test_small_games_known_values():
    # glove game: player 0 holds a left glove, players 1 and 2 right gloves; a pair is worth 1
    v = np.array([float(S[0] and (S[1] or S[2])) for S in coalition_matrix(3)])
    np.testing.assert_allclose(shapley_from_values(v, 3), [2 / 3, 1 / 6, 1 / 6], atol=1e-12)
    # a dummy player gets 0, symmetric players get equal shares
    v = np.array([3.0 * S[0] + 3.0 * S[2] + S[0] * S[2] for S in coalition_matrix(4)])
    phi = shapley_from_values(v, 4)
    np.testing.assert_allclose(phi, [3.5, 0.0, 3.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(mm_shap(np.array([1.0, -3.0, 0.0])), [0.25, 0.75, 0.0])


def test_linear_in_central_fluxes_gives_w_times_difference():
    cubes = mock_sample(1)
    base = baseline_images(cubes["ps1"], cubes["galex"], cubes["unwise"], seed=5)
    w = np.linspace(-2.0, 3.0, 9) * 1e-3
    orig_t = {s: torch.from_numpy(cubes[s].astype(np.float64)) for s in SURVEY_ORDER}
    base_t = {s: torch.from_numpy(base[s].astype(np.float64)) for s in SURVEY_ORDER}

    def central(x: torch.Tensor) -> torch.Tensor:  # (k, C, N, N) -> (k, C): flux within 6 px of the centre
        n = x.shape[-1]
        yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        disc = (torch.hypot(xx - (n - 1) / 2, yy - (n - 1) / 2) < 6).to(x.dtype)
        return (x * disc).sum(dim=(-1, -2))

    def value(batch):
        f = torch.cat([central(batch[s]) for s in SURVEY_ORDER], dim=1).numpy()
        return 0.7 + f @ w

    players = {s: [NAMES.index(b) for b in SURVEYS[s].bands] for s in SURVEY_ORDER}
    v = coalition_values(value, orig_t, base_t, players, coalition_matrix(9), batch_size=100)
    phi = shapley_from_values(v, 9)
    x = torch.cat([central(orig_t[s][None]) for s in SURVEY_ORDER], dim=1).numpy()[0]
    b = torch.cat([central(base_t[s][None]) for s in SURVEY_ORDER], dim=1).numpy()[0]
    print(f"linear model: max |phi - w (x - b)| = {np.abs(phi - w * (x - b)).max():.1e}")
    np.testing.assert_allclose(phi, w * (x - b), rtol=0, atol=1e-6)
    assert np.all(np.abs(w * (x - b)) > 1e-2)  # every band's target flux was removed, so every phi is large
    assert abs(phi.sum() - (v[-1] - v[0])) < 1e-9


@pytest.fixture(scope="module")
def release_sample(demo_release):
    from mantis_data.loading import make_loader

    loader = make_loader(demo_release, "test", order="sequential", batch_size=4, num_workers=0,
                         images=SURVEY_ORDER, rank=0, world_size=1)
    batch = next(iter(loader))
    i = int(np.argmax([float(batch["galex"][k].abs().sum()) for k in range(4)]))  # one with GALEX data
    return {s: batch[s][i].numpy() for s in SURVEY_ORDER}, batch["ebv"][i].numpy()


def test_efficiency_and_end_values_on_a_network(release_sample):
    cubes, ebv = release_sample
    em = tiny_model("early")
    r = explain_galaxy(em, cubes["ps1"], cubes["galex"], cubes["unwise"], ebv, seed=3, batch_size=200)
    phi = np.array([r["shapley"][b] for b in NAMES])
    print(f"efficiency: |sum phi - (V(all) - V(none))| = {abs(phi.sum() - (r['v_all'] - r['v_none'])):.1e}")
    assert abs(phi.sum() - (r["v_all"] - r["v_none"])) < 1e-6
    assert abs(sum(r["survey_shapley"].values()) - (r["v_all"] - r["v_none"])) < 1e-6
    assert np.abs(phi).max() > 1e-4  # the network does react to the bands
    np.testing.assert_allclose(sum(r["mm_shap"].values()), 1.0, atol=1e-12)
    # V(all) and V(none) are the model's point estimates on the stored and on the baseline cubes
    value = _value_fn(em)
    ebv_t = torch.as_tensor(ebv, dtype=torch.float32)[None]
    direct = [float(value({**_inputs(em, [c]), "ebv": ebv_t})[0]) for c in (cubes, r["baselines"])]
    np.testing.assert_allclose([r["v_all"], r["v_none"]], direct, atol=1e-5)


def test_agrees_with_the_shap_exact_explainer(release_sample):
    shap = pytest.importorskip("shap")
    cubes, ebv = release_sample
    em = tiny_model("early", seed=1)
    base = baseline_images(cubes["ps1"], cubes["galex"], cubes["unwise"], seed=0)
    r = explain_galaxy(em, cubes["ps1"], cubes["galex"], cubes["unwise"], ebv, baselines=base, surveys=False,
                       batch_size=512)
    both = _inputs(em, [cubes, base])
    orig, bl = {k: v[0] for k, v in both.items()}, {k: v[1] for k, v in both.items()}
    players = {"image": [NAMES.index(b) for b in em.transform.config.kept_channels]}
    extra = {"ebv": torch.as_tensor(ebv, dtype=torch.float32)}
    value = _value_fn(em)

    def f(z: np.ndarray) -> np.ndarray:  # shap's game: a row of 9 presence indicators -> V(S)
        return coalition_values(value, orig, bl, players, np.asarray(z) > 0.5, 512, extra)

    explanation = shap.explainers.Exact(f, shap.maskers.Independent(np.zeros((1, 9))))(np.ones((1, 9)))
    ours = np.array([r["shapley"][b] for b in NAMES])
    print(f"shap Exact: max |ours - shap| = {np.abs(ours - explanation.values[0]).max():.1e} (max |phi| {np.abs(ours).max():.1e})")
    np.testing.assert_allclose(ours, explanation.values[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(explanation.base_values[0], r["v_none"], atol=1e-5)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_composing_after_the_transform_equals_transforming_composed_cutouts(release_sample, fusion):
    cubes, ebv = release_sample
    em = tiny_model(fusion, seed=2)
    base = baseline_images(cubes["ps1"], cubes["galex"], cubes["unwise"], seed=1)
    rng = np.random.default_rng(0)
    coalitions = rng.random((6, 9)) < 0.5
    both = _inputs(em, [cubes, base])
    chan = {"image": em.transform.config.kept_channels} if fusion == "early" else {
        s: [b for b in em.transform.config.kept_channels if b in SURVEYS[s].bands] for s in SURVEY_ORDER}
    players = {k: [NAMES.index(b) for b in bands] for k, bands in chan.items()}
    ebv_t = torch.as_tensor(ebv, dtype=torch.float32)
    value = _value_fn(em)
    fast = coalition_values(value, {k: v[0] for k, v in both.items()}, {k: v[1] for k, v in both.items()},
                            players, coalitions, 6, {"ebv": ebv_t})
    composed = []
    for S in coalitions:
        c = {}
        for s in SURVEY_ORDER:
            keep = np.array([S[NAMES.index(b)] for b in SURVEYS[s].bands])[:, None, None]
            c[s] = np.where(keep, cubes[s], base[s])
        composed.append(c)
    slow = value({**_inputs(em, composed), "ebv": ebv_t[None].expand(len(coalitions), 2)})
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    assert np.ptp(fast) > 1e-5


def _checkpoint(path: Path) -> Path:
    em = tiny_model("early", seed=4)
    torch.save({"format": 1, "model_config": em.config.to_dict(),
                "data_config": {"fusion": "early", "bands": "all", "ps1_crop": None, "resize": 48},
                "model": em.model.state_dict()}, path)
    return path


def test_cli_explain_writes_results_and_resumes(demo_release, tmp_path, capsys):
    import pyarrow.parquet as pq

    from mantis_data.cli import main

    def _cli(*argv: str) -> SimpleNamespace:  # the CLI in this process (torch is imported once)
        rc = main(list(argv))
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=rc, stdout=out, stderr=err)

    ckpt = _checkpoint(tmp_path / "best.pt")
    out = tmp_path / "explain"
    args = ["explain", "--checkpoint", str(ckpt), "--release", str(demo_release), "--split", "test",
            "--out", str(out), "--part-size", "2", "--examples", "1", "--bootstrap", "50", "--no-progress"]
    p = _cli(*args, "--n", "4")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "explained 4 galaxies (4 new)" in p.stdout
    t = pq.read_table(out / "shapley.parquet")
    assert t.num_rows == 4 and len(list((out / "parts").glob("part-*.parquet"))) == 2
    phi = np.stack([t.column(f"shapley_{b}").to_numpy() for b in NAMES], axis=1)
    np.testing.assert_allclose(phi.sum(axis=1), t.column("v_all").to_numpy() - t.column("v_none").to_numpy(), atol=1e-6)
    for f in ("shapley_by_redshift.csv", "shapley_by_redshift.md", "survey_shapley_by_redshift.csv"):
        assert (out / f).stat().st_size > 0
    assert (out / "shapley_vs_redshift.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((out / "baselines").glob("*.png"))) == 1
    first = t.to_pydict()
    p = _cli(*args, "--n", "6")  # resumes: only two more galaxies are computed
    assert p.returncode == 0, p.stderr[-3000:]
    assert "explained 6 galaxies (2 new)" in p.stdout
    t2 = pq.read_table(out / "shapley.parquet").to_pydict()
    assert t2["target_id"][:4] == first["target_id"] and t2["shapley_r"][:4] == first["shapley_r"]
    assert json.loads((out / "explain.json").read_text())["split"] == "test"
    p = _cli(*args, "--n", "6", "--seed", "9")  # another run into the same folder
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr
    p = _cli("explain", "--checkpoint", str(tmp_path / "missing.pt"), "--release", str(demo_release), "--out", str(tmp_path / "x"))
    assert p.returncode == 2 and "missing.pt" in p.stderr and "Traceback" not in p.stderr
