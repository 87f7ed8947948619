"""Calibrated PMFs and band importance in ``photoz`` and the web app (a tiny model, the loopback mock sky).

* the calibrated PMF the API, the page, the CLI and the batch mode give equals ``Calibrator.apply`` on the
  raw PMF and ``sample_features`` of the same stamps and E(B-V);
* the band importance sums to V(all) - V(none) (efficiency), V(all) is the point estimate shown, and it
  equals ``explain_galaxy`` on the same stamps with the same seed;
* errors: no calibrator configured, no coverage, a bad --calibrator folder: a 4xx or exit 2, one line.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("flask")
pytest.importorskip("calpit")
pytest.importorskip("sep")

from test_app import Served, no_traceback, tiny_checkpoint  # noqa: E402

from builders.mock.server import MockServer  # noqa: E402
from builders.mock.sky import MockSky  # noqa: E402
from mantis_data.app import create_app  # noqa: E402
from mantis_data.calibrate import FEATURE_NAMES, Calibrator, sample_features  # noqa: E402
from mantis_data.cutouts.fetch import FetchConfig  # noqa: E402
from mantis_data.explain import explain_galaxy, galaxy_seed, wrap_model  # noqa: E402
from mantis_data.photoz import ForcedPhotoZ, summarise  # noqa: E402
from mantis_data.redshift import GRID  # noqa: E402


def tiny_calibrator(folder):
    """A small IsplineNN CalPIT fitted on synthetic over-confident PMFs with 83 features, saved in ``folder``."""
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(n, len(FEATURE_NAMES)))
    z = np.clip(0.5 + 0.1 * x[:, 0] + rng.normal(0, 0.1, n), 0.01, 1.59)
    pmf = np.exp(-0.5 * ((GRID - (0.5 + 0.1 * x[:, :1])) / 0.03) ** 2)
    pmf /= pmf.sum(axis=1, keepdims=True)
    Calibrator.fit(x, z, pmf, hidden=(16, 16), epochs=3, val_fraction=0.0, seed=0).save(folder)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("pzcal")
    sky = MockSky(n_galaxies=40, seed=2)
    ckpt = tiny_checkpoint(root / "tiny.pt")
    cal = tiny_calibrator(root / "calpit")
    with MockServer(sky) as srv:
        cfg = FetchConfig(ps1_url=srv.ps1_url, legacy_url=srv.legacy_url, rate=None, backoff_s=0.01, attempts=2, timeout_s=5)
        pz = ForcedPhotoZ(ckpt, root / "cache", cfg, dust="bh", calibrator=cal)
        plain = ForcedPhotoZ(ckpt, root / "cache", cfg, dust="bh")
        app, app_plain = Served(create_app(pz)), Served(create_app(plain))
        ok = [r for r in pz.predict(sky.ra[:8], sky.dec[:8], keep_images=True) if r.ok]
        assert len(ok) >= 2
        try:
            yield {"sky": sky, "srv": srv, "pz": pz, "app": app, "plain": app_plain, "ckpt": ckpt, "cal": cal,
                   "root": root, "ok": ok}
        finally:
            app.close()
            app_plain.close()
            pz.close()
            plain.close()


def expected_calibrated(cal_dir, r) -> np.ndarray:
    feats = sample_features(r.images["ps1"], r.images["galex"], r.images["unwise"], r.ebv)
    return Calibrator.load(cal_dir).apply(r.pmf, feats)


def png_width(data: bytes) -> int:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", data[16:20])[0]


def test_calibrated_pmf_in_the_api_and_the_page(world):
    app, r = world["app"], world["ok"][0]
    q = f"ra={r.ra!r}&dec={r.dec!r}"
    want = expected_calibrated(world["cal"], r)
    status, body, _ = app.get(f"/api/photoz?{q}&calibrated=1")
    out = json.loads(body)
    assert status == 200 and "calibrated" in out
    got = np.array(out["calibrated"]["pmf"])
    np.testing.assert_allclose(got, want, atol=1e-7)
    np.testing.assert_allclose(out["pmf"], r.pmf, atol=1e-7)  # the raw one beside it, unchanged
    assert np.abs(got - np.array(out["pmf"])).sum() > 0.05  # the calibrator does change the PMF
    s = summarise(want)
    assert out["calibrated"]["z_mean"] == pytest.approx(s["z_mean"], abs=1e-6)
    # the served summary is its own PMF's, exactly; the PMF matches the calibrator's to float32 noise (1e-7),
    # which moves an interval's interpolated edges by up to ~1e-6
    served = summarise(got)
    assert out["calibrated"]["intervals"]["0.68"] == pytest.approx(list(served["intervals"][0.68]), abs=1e-12)
    assert out["calibrated"]["z_mean"] == pytest.approx(served["z_mean"], abs=1e-12)
    assert out["calibrated"]["intervals"]["0.68"] == pytest.approx(list(s["intervals"][0.68]), abs=1e-6)
    status, body, _ = app.get(f"/api/photoz?{q}")
    assert status == 200 and "calibrated" not in json.loads(body)  # only when asked for

    status, page, _ = app.get(f"/?{q}&calibrated=1")
    assert status == 200 and b'id="calibrated" name="calibrated" value="1" checked' in page
    assert f'id="cal-z-mean">{s["z_mean"]:.6f}<'.encode() in page and f'id="z-mean">{out["z_mean"]:.6f}<'.encode() in page
    status, page, _ = app.get(f"/?{q}")
    assert status == 200 and b'id="cal-z-mean"' not in page and b"disabled" not in page.split(b'id="calibrated"')[1][:80]


def test_band_importance_in_the_api_page_and_png(world):
    app, pz, r = world["app"], world["pz"], world["ok"][1]
    q = f"ra={r.ra!r}&dec={r.dec!r}"
    status, body, _ = app.get(f"/api/photoz?{q}&explain=1&pmf=0")
    out = json.loads(body)
    assert status == 200
    e = out["explanation"]
    phi = np.array(list(e["shapley"].values()))
    assert e["bands"] == ["FUV", "NUV", "g", "r", "i", "z", "y", "W1", "W2"] and set(e["shapley"]) == set(e["bands"])
    assert abs(phi.sum() - (e["v_all"] - e["v_none"])) < 1e-6  # efficiency
    assert e["v_all"] == pytest.approx(out["z_mean"], abs=1e-5)  # V(all) is the point estimate shown
    assert sum(e["mm_shap"].values()) == pytest.approx(1.0, abs=1e-9) and np.abs(phi).max() > 0
    ref = explain_galaxy(wrap_model(pz.model, pz.transform), r.images["ps1"], r.images["galex"], r.images["unwise"],
                         r.ebv, seed=galaxy_seed(r.target_id))
    assert e["seed"] == galaxy_seed(r.target_id)
    for k in ("shapley", "mm_shap", "survey_shapley", "survey_mm_shap"):
        for b, v in ref[k].items():
            assert e[k][b] == pytest.approx(v, abs=1e-9), (k, b)

    status, page, _ = app.get(f"/?{q}&explain=1&calibrated=1")
    assert status == 200 and b'id="importance"' in page and b'id="cal-z-mean"' in page
    assert f'id="shap-W1">{e["shapley"]["W1"]:+.5f}<'.encode() in page
    _, plain_png, _ = app.get(f"/api/photoz.png?{q}")
    status, png, ctype = app.get(f"/api/photoz.png?{q}&explain=1&calibrated=1")
    assert status == 200 and ctype == "image/png" and png_width(png) > png_width(plain_png)  # the bar chart panel


def test_errors(world):
    plain, app = world["plain"], world["app"]
    r = world["ok"][0]
    status, body, _ = plain.get(f"/api/photoz?ra={r.ra!r}&dec={r.dec!r}&calibrated=1")
    err = json.loads(body)
    assert status == 400 and err["kind"] == "not_configured" and "--calibrator DIR" in err["error"]
    status, page, _ = plain.get(f"/?ra={r.ra!r}&dec={r.dec!r}&calibrated=1")
    assert status == 400 and b"Not available on this server" in page and b"--calibrator DIR" in page
    no_traceback(page)
    status, page, _ = plain.get("/")
    assert b"no calibrator on this server" in page and b"disabled" in page.split(b'id="calibrated"')[1][:120]
    for query, code, text in (("ra=10:00:24&dec=-45:00:00&explain=1", 422, "no ps1 coverage"),
                              ("ra=abc&dec=1&explain=1&calibrated=1", 400, "cannot read RA")):
        status, body, _ = app.get(f"/api/photoz?{query}")
        assert status == code and text in json.loads(body)["error"], (query, body)
        no_traceback(body)


def test_cli_single_and_batch(world, tmp_path, capsys):
    from mantis_data.cli import main
    from mantis_data.evaluate import read_predictions
    from mantis_data.photoz_batch import calibrated_path

    srv, pz, cal, r = world["srv"], world["pz"], world["cal"], world["ok"][0]
    common = ["--checkpoint", str(world["ckpt"]), "--ps1-url", srv.ps1_url, "--legacy-url", srv.legacy_url, "--rate", "0",
              "--dust", "bh", "--attempts", "2", "--backoff", "0.01", "--cache", str(world["root"] / "cache")]
    png, js = tmp_path / "p.png", tmp_path / "p.json"
    rc = main(["photoz", "--ra", repr(r.ra), "--dec", repr(r.dec), *common, "--calibrator", str(cal), "--explain",
               "--png", str(png), "--json", str(js)])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    out = json.loads(js.read_text())
    np.testing.assert_allclose(out["calibrated"]["pmf"], expected_calibrated(cal, r), atol=1e-7)
    assert f"calibrated (CalPIT): z = {out['calibrated']['z_mean']:.6f}" in stdout
    e = out["explanation"]
    assert abs(sum(e["shapley"].values()) - (e["v_all"] - e["v_none"])) < 1e-6
    assert "Shapley" in stdout and "MM-SHAP" in stdout and f"{e['shapley']['g']:+9.5f}" in stdout
    assert png_width(png.read_bytes()) > 1500  # cutouts, PMFs, band importance

    # batch mode: a second predictions file with the calibrated PMFs, read by mantis-data evaluate as it is
    sky = world["sky"]
    csv = tmp_path / "c.csv"
    csv.write_text("name,ra,dec,z\n" + "".join(f"g{i},{float(sky.ra[i])!r},{float(sky.dec[i])!r},0.3\n" for i in range(6)))
    out_p = tmp_path / "preds.parquet"
    rc = main(["photoz", "--coords", str(csv), "--out", str(out_p), *common, "--calibrator", str(cal), "--no-progress"])
    stdout = capsys.readouterr().out
    assert rc == 0 and "preds.calibrated.parquet (CalPIT)" in stdout, stdout
    raw, calp = read_predictions(out_p), read_predictions(calibrated_path(out_p))
    assert list(raw.target_id) == list(calp.target_id) and raw.n >= 2
    ref = {x.target_id: x for x in pz.predict(sky.ra[:6], sky.dec[:6], keep_images=True) if x.ok}
    assert len(ref) == raw.n
    for i, tid in enumerate(raw.target_id):
        k = int(tid[1:])
        x = next(v for v in ref.values() if v.ra == float(sky.ra[k]))
        np.testing.assert_allclose(raw.pmf[i], x.pmf, atol=1e-7)
        np.testing.assert_allclose(calp.pmf[i], expected_calibrated(cal, x), atol=1e-6)
    # a rerun without --calibrator on the same parts is refused; --explain in batch mode, a bad folder: exit 2
    for extra, text in (([], "written with --calibrator"), (["--calibrator", str(cal), "--explain"], "--explain works on one"),
                        (["--calibrator", str(tmp_path / "nope")], "is not a folder"),
                        (["--calibrator", str(tmp_path)], "calpit_mean.npy not found")):
        rc = main(["photoz", "--coords", str(csv), "--out", str(out_p), *common, "--no-progress", *extra])
        err = capsys.readouterr().err
        assert rc == 2 and text in err and "Traceback" not in err, (extra, err)
