"""CalPIT recalibration: features, over-confident and calibrated synthetic models, the released layout, the CLI."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("calpit")
pytest.importorskip("sep")
stats = pytest.importorskip("scipy.stats")

from mantis_data.calibrate import (  # noqa: E402
    FEATURE_NAMES,
    Calibrator,
    feature_vector,
    luptitude,
)
from mantis_data.metrics import cde_loss, pit  # noqa: E402
from mantis_data.redshift import CELL_EDGES, N_BINS  # noqa: E402

N = 1200
"""Galaxies in each synthetic set (calibration and test)."""
TEMPERATURE = 0.4
"""Over-confident model: log-PMFs divided by this (Gaussian PMFs become sqrt(0.4) = 0.63 times as wide)."""
CALIBRATED_MARGIN = 0.075
"""On a calibrated model, recalibration may worsen the CDE loss by at most 7.5% of its magnitude (it costs ~5%
with 1,200 calibration galaxies: the noise of the estimated PIT CDF)."""


def synthetic(n: int, seed: int):
    """Features (n, 4), redshifts drawn from the model's own Gaussian PMFs, and those (calibrated) PMFs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    mu = 0.7 + 0.2 * np.tanh(x[:, 0])
    sigma = 0.04 + 0.04 * (1 + np.tanh(x[:, 1]))
    cdf = stats.norm.cdf((CELL_EDGES[None, :] - mu[:, None]) / sigma[:, None])
    pmf = np.diff(cdf, axis=1)
    pmf /= pmf.sum(axis=1, keepdims=True)
    return x, np.clip(rng.normal(mu, sigma), 0.01, 1.59), pmf


def sharpen(pmf: np.ndarray, temperature: float) -> np.ndarray:
    """PMFs with a softmax temperature: p ** (1 / T), renormalised."""
    lp = np.log(np.clip(pmf, 1e-300, None)) / temperature
    p = np.exp(lp - lp.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def ks_p(pmf, z) -> float:
    return float(stats.kstest(pit(pmf, z), "uniform").pvalue)


FIT = dict(hidden=(64, 64), num_basis=10, epochs=15, batch_size=512, oversample=4, val_fraction=0.0, seed=0)


@pytest.fixture(scope="module")
def data():
    return synthetic(N, 0), synthetic(N, 1)


@pytest.fixture(scope="module")
def overconfident(data):
    (xc, zc, pc), _ = data
    return Calibrator.fit(xc, zc, sharpen(pc, TEMPERATURE), **FIT)


def test_feature_layout():
    assert len(FEATURE_NAMES) == 83 and len(set(FEATURE_NAMES)) == 83
    rng = np.random.default_rng(0)
    flux = rng.uniform(-5, 500, (3, 9))
    ebv = rng.uniform(0, 0.3, (3, 2))
    f = feature_vector(flux, ebv)
    assert f.shape == (3, 83)
    lup = luptitude(flux)
    np.testing.assert_allclose(f[:, -9:], lup)
    np.testing.assert_allclose(f[:, 72:74], ebv)
    names = list(FEATURE_NAMES)
    np.testing.assert_allclose(f[:, names.index("g-W1")], lup[:, 2] - lup[:, 7])
    np.testing.assert_allclose(f[:, names.index("W1-g")], lup[:, 7] - lup[:, 2])
    np.testing.assert_allclose(luptitude(10.0), np.arcsinh(6.0) / 6.0)


def test_overconfident_model_becomes_calibrated(data, overconfident):
    _, (xt, zt, pt) = data
    before = sharpen(pt, TEMPERATURE)
    after = overconfident.apply(before, xt)
    assert after.shape == (N, N_BINS) and after.dtype == np.float32
    assert np.all(after >= 0) and np.allclose(after.sum(axis=1), 1.0, atol=1e-5)
    p_before, p_after = ks_p(before, zt), ks_p(after, zt)
    loss_before, loss_after = cde_loss(before, zt), cde_loss(after, zt)
    print(f"over-confident: PIT KS p {p_before:.2e} -> {p_after:.3f}; CDE loss {loss_before:.3f} -> {loss_after:.3f}")
    assert p_before < 1e-6
    assert p_after > 0.01
    assert loss_after < loss_before - 0.3


def test_calibrated_model_is_not_made_worse(data):
    (xc, zc, pc), (xt, zt, pt) = data
    cal = Calibrator.fit(xc, zc, pc, **FIT)
    after = cal.apply(pt, xt)
    loss_before, loss_after = cde_loss(pt, zt), cde_loss(after, zt)
    print(f"calibrated: PIT KS p {ks_p(pt, zt):.3f} -> {ks_p(after, zt):.3f}; CDE loss {loss_before:.3f} -> {loss_after:.3f}")
    assert ks_p(after, zt) > 0.01
    assert loss_after <= loss_before + CALIBRATED_MARGIN * abs(loss_before)


def test_save_load_round_trip_and_single_galaxy(tmp_path, data, overconfident):
    _, (xt, zt, pt) = data
    overconfident.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "calpit.json", "calpit_checkpoint.pt", "calpit_mean.npy", "calpit_std.npy"]
    again = Calibrator.load(tmp_path / "model")
    np.testing.assert_array_equal(again.apply(pt[:5], xt[:5]), overconfident.apply(pt[:5], xt[:5]))
    one = again.apply(pt[0], xt[0])
    assert one.shape == (N_BINS,)
    np.testing.assert_allclose(one, overconfident.apply(pt[:1], xt[:1])[0], atol=1e-6)


def test_released_layout_loads(tmp_path):
    """The released calpit_checkpoint.pt: a bare UMNN MonotonicNN(84, [1024] * 4, sigmoid=True) state dict."""
    from calpit.nn.umnn import MonotonicNN

    torch.manual_seed(0)
    net = MonotonicNN(84, [1024, 1024, 1024, 1024], sigmoid=True)
    torch.save(net.state_dict(), tmp_path / "calpit_checkpoint.pt")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calpit_mean.npy", rng.normal(size=83))
    np.save(tmp_path / "calpit_std.npy", rng.uniform(0.5, 2, 83))
    cal = Calibrator.load(tmp_path)  # no calpit.json: the released layout
    assert cal.meta["network"] == "monotonic" and cal.meta["hidden"] == [1024] * 4 and len(cal.mean) == 83
    x = cal.standardise(rng.normal(size=(2, 83)))
    alpha = np.array([0.05, 0.5, 0.95])
    r = cal._estimator().predict(x, alpha)
    with torch.no_grad():  # the same numbers as the network the state dict came from
        rows = torch.cat([torch.as_tensor(alpha, dtype=torch.float32).repeat(2)[:, None],
                          torch.as_tensor(np.repeat(x, 3, axis=0), dtype=torch.float32)], dim=1)
        direct = net(rows).reshape(2, 3).numpy()
    np.testing.assert_allclose(r, direct, atol=1e-6)
    assert np.all(np.diff(r, axis=1) >= 0)
    with pytest.raises(Exception, match="83"):
        Calibrator.from_released(tmp_path / "calpit_checkpoint.pt", np.zeros(10), np.ones(10))


def test_cli_fit_apply_evaluate(demo_release, tmp_path, capsys):
    from mantis_data.cli import main
    from mantis_data.evaluate import read_predictions, write_predictions
    from mantis_data.loading import make_loader

    def cli(*argv):
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=rc, stdout=out, stderr=err)

    rng = np.random.default_rng(0)
    files = {}
    for split in ("validation", "test"):
        loader = make_loader(demo_release, split, order="sequential", batch_size=64, num_workers=0,
                             images=("galex",), rank=0, world_size=1)
        ids, zs = [], []
        for b in loader:
            ids += [t for t, v in zip(b["target_id"], b["valid"].tolist(), strict=True) if v]
            zs += b["z"][b["valid"]].tolist()
        z = np.clip(np.array(zs), 0.01, 1.59)
        mu = z + rng.normal(0, 0.05, len(z))
        pmf = np.diff(stats.norm.cdf((CELL_EDGES[None] - mu[:, None]) / 0.02), axis=1)
        files[split] = write_predictions(tmp_path / f"{split}.parquet", ids, z, pmf / pmf.sum(axis=1, keepdims=True))
    model = tmp_path / "calpit"
    # the demo sky's validation split is tiny (8 galaxies): fit on its test split, apply to validation
    p = cli("calibrate", "fit", "--predictions", files["test"], "--release", demo_release, "--split", "test",
            "--out", model, "--epochs", "3", "--hidden", "16", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert (model / "calpit.json").is_file() and (model / "calpit_mean.npy").is_file()
    out = tmp_path / "validation_calibrated.parquet"
    p = cli("calibrate", "apply", "--model", model, "--predictions", files["validation"], "--release", demo_release,
            "--split", "validation", "--out", out, "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "| CDE loss |" in p.stdout and "before calibration" in p.stdout  # table 6's before/after rows
    assert (tmp_path / "validation_calibrated_before_after.md").is_file()
    new, old = read_predictions(out), read_predictions(files["validation"])
    assert list(new.target_id) == list(old.target_id) and np.allclose(new.pmf.sum(axis=1), 1.0, atol=1e-4)
    p = cli("evaluate", out, "--out", tmp_path / "report", "--bootstrap", "20")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "report" / "metrics.md").is_file()
    # the test split's galaxies are not in the validation split (the default for fit): a one-line error, exit 2
    p = cli("calibrate", "fit", "--predictions", files["test"], "--release", demo_release,
            "--out", tmp_path / "x", "--no-progress")
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "--split" in p.stderr
    p = cli("calibrate", "apply", "--model", tmp_path / "nope", "--predictions", files["test"], "--release",
            demo_release, "--out", tmp_path / "y.parquet")
    assert p.returncode == 2 and "nope" in p.stderr
