"""Forced photo-z against the loopback mock services: the release's numbers, quality rules and flags.

* A tiny early-fusion model trained by the demo recipe (``training.train``, one process) on the session's
  demo release; every test-split galaxy's forced photo-z (fresh cutouts from the mock server at the
  galaxy's coordinates) equals ``training.evaluate.predict`` on its release sample to 1e-5, and
  ``mantis-data photoz`` prints the same point estimate.
* The same quality rules as the build: every accepted catalog target the build rejected at the cutout
  stage is rejected here too (the NaN rule with the same reason), and every released galaxy is predicted.
* Coordinates (degrees, sexagesimal, out of range), unWISE requested at 2.75"/px, flags.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from conftest import DEMO_N  # noqa: E402

from builders.mock.server import MockServer  # noqa: E402
from builders.mock.sky import MockSky  # noqa: E402
from mantis_data.cutouts.fetch import FetchConfig  # noqa: E402
from mantis_data.photoz import CoordinateError, ForcedPhotoZ, coordinate_id, parse_coordinate  # noqa: E402
from mantis_data.redshift import point_estimate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = json.dumps({"depths": [1, 1, 1, 1], "dims": [16, 32, 64, 128]})


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def trained(demo_release, tmp_path_factory) -> Path:
    """A tiny early-fusion checkpoint trained by the demo recipe on the demo release (a few steps)."""
    run = tmp_path_factory.mktemp("pz-train") / "run"
    cmd = [sys.executable, "-m", "training.train", "--data", str(demo_release), "--out", str(run),
           "--fusion", "early", "--backbone", "convnext_atto", "--backbone-kwargs", TINY, "--resize", "48",
           "--hidden-width", "64", "--epochs", "1", "--batches-per-epoch", "4", "--batch-size", "8",
           "--workers", "0", "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run / "last.pt"


@pytest.fixture(scope="module")
def server():
    with MockServer(MockSky(n_galaxies=DEMO_N, seed=0)) as srv:
        yield srv


def fetch_config(srv, **kw) -> FetchConfig:
    return FetchConfig(ps1_url=srv.ps1_url, legacy_url=srv.legacy_url, rate=None, timeout_s=5, backoff_s=0.01,
                       **{"attempts": 3, **kw})


def test_forced_photoz_equals_the_release_evaluation(trained, demo_release, server, tmp_path, capsys):
    import pandas as pd

    from training.evaluate import predict

    ids, z, pmf = predict(trained, demo_release, "test", workers=0, batch_size=16)
    want = dict(zip(ids, point_estimate(pmf), strict=True))
    audit = pd.read_parquet(demo_release / "targets_audit.parquet")
    test = audit[audit["in_release"] & (audit["split"] == "test")].set_index("target_id").loc[list(ids)]
    pz = ForcedPhotoZ(trained, tmp_path / "cache", fetch_config(server), dust="bh")
    results = pz.predict(test["ra"].to_numpy(), test["dec"].to_numpy())
    assert [r.reason for r in results] == [None] * len(ids)
    diff = np.array([abs(r.z_mean - want[t]) for r, t in zip(results, ids, strict=True)])
    print(f"forced photo-z vs training.evaluate on {len(ids)} test galaxies: max |dz| = {diff.max():.3g}")
    assert diff.max() <= 1e-5
    assert np.ptp([r.z_mean for r in results]) > 1e-3  # galaxies differ: not a constant output

    # the command line prints the same point estimate, and writes the PNG and the JSON
    from mantis_data.cli import main

    tid, row = test.index[0], test.iloc[0]
    png, js = tmp_path / "pz.png", tmp_path / "pz.json"
    rc = main(["photoz", "--ra", repr(float(row["ra"])), "--dec", repr(float(row["dec"])), "--checkpoint", str(trained),
               "--cache", str(tmp_path / "cache2"), "--ps1-url", server.ps1_url, "--legacy-url", server.legacy_url,
               "--rate", "0", "--dust", "bh", "--png", str(png), "--json", str(js)])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    printed = float(stdout.split("z = ")[1].split()[0])
    assert abs(printed - want[tid]) <= 1e-5
    out = json.loads(js.read_text())
    assert abs(out["z_mean"] - want[tid]) <= 1e-5 and len(out["pmf"]) == 400
    lo68, hi68 = out["intervals"]["0.68"]
    lo95, hi95 = out["intervals"]["0.95"]
    assert lo95 <= lo68 <= hi68 <= hi95 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_release_quality_rules(trained, demo_release, server, tmp_path):
    import pandas as pd

    audit = pd.read_parquet(demo_release / "targets_audit.parquet")
    acc = audit[audit["accepted"]]
    pz = ForcedPhotoZ(trained, tmp_path / "cache", fetch_config(server, attempts=1), dust="bh")
    results = pz.predict(acc["ra"].to_numpy(), acc["dec"].to_numpy())
    by_reason = {}
    for r, released, why in zip(results, acc["in_release"], acc["cutout_reject_reason"], strict=True):
        assert r.ok == bool(released), (r.reason, why)
        if not released:
            by_reason[why] = r.reason
    nan_rule = {k: v for k, v in by_reason.items() if k.startswith("ps1_nan_fraction")}
    assert nan_rule and all(k == v for k, v in nan_rule.items()), nan_rule
    flags = [r.flags for r in results if r.ok]
    assert any(f["no_galex_coverage"] for f in flags) and not all(f["no_galex_coverage"] for f in flags)
    assert any(np.nanmax(f["ps1_nan_frac"]) > 0 for f in flags)  # below the 1% rule: predicted, flagged
    for r in results:
        if r.ok:
            assert r.flags["galex_coverage"] == 0.0 if r.flags["no_galex_coverage"] else r.flags["galex_coverage"] > 0


def test_coordinates_pixel_scales_and_flags(trained, server, tmp_path):
    assert parse_coordinate("10:00:24", "+02:12:00") == pytest.approx((150.1, 2.2), abs=1e-12)
    assert parse_coordinate("10h00m24s", "2d12m0s") == pytest.approx((150.1, 2.2), abs=1e-12)
    assert parse_coordinate("150.1", "-2.2") == (150.1, -2.2) and parse_coordinate(0, 90) == (0.0, 90.0)
    for ra, dec, msg in ((360, 0, "outside \\[0, 360\\)"), (-1, 0, "outside"), (10, 90.5, "outside \\[-90, 90\\]"),
                         ("24:00:00", 0, "out of range"), ("abc", 0, "cannot read RA"), (10, "", "Dec is empty"),
                         (float("nan"), 0, "outside")):
        with pytest.raises(CoordinateError, match=msg):
            parse_coordinate(ra, dec)
    assert coordinate_id(150.1, 2.2) == coordinate_id(150.1, 2.2) != coordinate_id(150.1, 2.3)

    pz = ForcedPhotoZ(trained, tmp_path / "cache", fetch_config(server), dust="bh")
    server.reset_log()
    south, north = pz.predict([150.1, 150.1], [-45.0, 2.2], keep_images=True)
    layers = {r["params"]["layer"]: r["params"]["pixscale"] for r in server.log if r["endpoint"] == "fits-cutout"}
    assert layers == {"galex": "1.5", "unwise-neo7": "2.75"}  # unWISE at the training scale, not 1.5"/px
    assert south.reason == "ps1_no_coverage" and south.kind == "no_coverage"
    assert south.flags["below_dec_-30"] and south.flags["outside_ps1"]
    assert north.ok and not north.flags["below_dec_-30"] and not north.flags["outside_ps1"]
    assert set(north.images) == {"galex", "ps1", "unwise"} and north.images["ps1"].shape == (5, 170, 170)
    d = north.to_dict()
    assert d["ok"] and d["reason"] is None and len(d["pmf"]) == 400 and abs(sum(d["pmf"]) - 1) < 1e-4
    json.dumps(d)  # JSON-ready (no numpy scalars, no NaN)
    # cached: a second call asks the services nothing
    n = len(server.log)
    again = pz.predict([150.1], [2.2])[0]
    assert len(server.log) == n and again.z_mean == north.z_mean
