"""Batch forced photo-z (``mantis-data photoz --coords --out``) under injected service faults, killed and rerun.

A CSV of mock-sky coordinates (galaxies, empty sky, south of Pan-STARRS, unreadable and out-of-range
text) runs against the loopback mock services with transient faults (retried) and permanent ones (the
coordinate's reason). The run is SIGKILLed after its first part file, then rerun: every row ends with a
prediction or a reason, no stamp already in the cache at the kill is requested again, no coordinate of
a finished part is requested at all, and the output is a predictions file ``mantis-data evaluate`` reads.
(The same with 500 coordinates is in the report: ``benchmarks/photoz.py --faults``.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from builders.mock.server import FaultPlan, MockServer  # noqa: E402
from builders.mock.sky import MockSky  # noqa: E402
from mantis_data.bands import LEGACY_SURVEY_LAYERS  # noqa: E402
from mantis_data.cutouts.layout import cutout_path  # noqa: E402
from mantis_data.evaluate import read_predictions  # noqa: E402
from mantis_data.models import ModelConfig, build_model  # noqa: E402
from mantis_data.photoz import coordinate_id, parse_coordinate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LAYER_SURVEY = {v: k for k, v in LEGACY_SURVEY_LAYERS.items()}
ATTEMPTS = 3


def tiny_checkpoint(path: Path) -> Path:
    """A randomly initialised tiny early-fusion model saved as a training checkpoint (model + configs)."""
    cfg = ModelConfig(backbone="convnext_atto", backbone_kwargs={"depths": [1, 1, 1, 1], "dims": [8, 16, 24, 32]},
                      hidden_width=16)
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict(), "model_config": cfg.to_dict(),
                "data_config": {"fusion": "early", "bands": "all", "ps1_crop": None, "resize": 32}}, path)
    return path


def write_coords(path: Path, sky: MockSky, n_galaxies: int) -> list[tuple]:
    """CSV rows (id, ra text, dec text, z): galaxies, empty sky, the far south, bad text; returns them."""
    rows = [(f"g{i}", repr(float(sky.ra[i])), repr(float(sky.dec[i])), float(sky.z_true[i])) for i in range(n_galaxies)]
    rows += [("sky1", "150.3", "2.4", 0.5), ("sex", "10:00:30", "+02:10:00", 0.5), ("south", "150.1", "-45.0", 0.5),
             ("bad", "ten", "2.0", 0.5), ("range", "361", "0", 0.5)]
    path.write_text("id,ra,dec,z\n" + "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows))
    return rows


def stamp_path(rec: dict) -> str:
    q = rec["params"]
    tid = coordinate_id(float(q["ra"]), float(q["dec"]))
    if rec["endpoint"] == "fitscut":
        return cutout_path(".", "ps1", tid, re.search(r"\.stk\.([grizy])\.", q["red"]).group(1)).as_posix()
    return cutout_path(".", LAYER_SURVEY[q["layer"]], tid).as_posix()


def cached(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.fits") if ".tmp" not in p.parts}


def test_batch_under_faults_killed_and_rerun(tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    sky = MockSky(n_galaxies=60, seed=3)
    coords, out, cache = tmp_path / "coords.csv", tmp_path / "preds.parquet", tmp_path / "cache"
    rows = write_coords(coords, sky, 30)
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    plan = FaultPlan(transient={"503": 0.08, "429": 0.04, "drop": 0.04, "truncate": 0.04, "html": 0.04},
                     permanent={"503": 0.04}, max_repeats=ATTEMPTS - 1, seed=5, retry_after_s=0.005)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with MockServer(sky, plan) as srv:
        cmd = [sys.executable, "-m", "mantis_data.cli", "photoz", "--coords", str(coords), "--out", str(out),
               "--checkpoint", str(ckpt), "--cache", str(cache), "--ps1-url", srv.ps1_url, "--legacy-url",
               srv.legacy_url, "--dust", "bh", "--attempts", str(ATTEMPTS), "--backoff", "0.01", "--timeout", "5",
               "--chunk", "5", "--batch-size", "4", "--no-progress"]
        proc = subprocess.Popen([*cmd, "--rate", "60"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        parts = out.with_name(out.name + ".parts")
        deadline = time.monotonic() + 90
        while not list(parts.glob("part-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
        time.sleep(0.1)
        before = cached(cache)
        done_before = set(pd.concat([pq.read_table(f).to_pandas() for f in parts.glob("part-*.parquet")])["target_id"])
        assert 0 < len(done_before) < len(rows) and not out.exists()  # killed midway
        n_first = len(srv.log)

        rerun = subprocess.run([*cmd, "--rate", "0"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        time.sleep(0.05)
        second = list(srv.log[n_first:])
        expected = {rid: srv.expected_status(*parse_coordinate(r, d), ATTEMPTS) for rid, r, d, _ in rows[:-2]}
        # a third run (in this process) finds everything done: nothing is asked of the services
        n_second = len(srv.log)
        from mantis_data.cutouts.fetch import FetchConfig
        from mantis_data.photoz import ForcedPhotoZ
        from mantis_data.photoz_batch import predict_catalog

        pz = ForcedPhotoZ(ckpt, cache, FetchConfig(ps1_url=srv.ps1_url, legacy_url=srv.legacy_url, rate=None), dust="bh")
        third = predict_catalog(pz, coords, out, chunk=5, progress=False)
        pz.close()
        assert third["already_done"] == len(rows) and len(srv.log) == n_second

    # nothing fetched twice: no stamp in the cache at the kill, and no finished row, is requested again
    refetched = [stamp_path(r) for r in second if r["stamp"] and stamp_path(r) in before]
    assert refetched == []
    finished = {coordinate_id(float(r), float(d)) for rid, r, d, _ in rows if rid in done_before and rid.startswith("g")}
    assert not [r for r in second if coordinate_id(float(r["params"]["ra"]), float(r["params"]["dec"])) in finished]

    # every coordinate has a prediction or a reason, never both
    preds = pq.read_table(out).to_pandas()
    failed = pd.read_csv(out.with_name(out.name + ".failed.csv"))
    assert sorted(preds["target_id"].tolist() + failed["target_id"].tolist()) == sorted(r[0] for r in rows)
    assert failed["reason"].notna().all() and (failed["reason"].str.len() > 0).all()
    reason = dict(zip(failed["target_id"], failed["reason"], strict=True))
    assert reason["bad"].startswith("bad_coordinate: cannot read RA") and "outside [0, 360)" in reason["range"]
    assert reason["south"] == "ps1_no_coverage"
    for rid, exp in expected.items():  # the services' planted truth decides each coordinate's outcome
        if "failed" in exp.values():
            assert "failed:" in reason[rid] or "no_coverage" in reason[rid], (rid, exp, reason.get(rid))
        elif exp["ps1"] == "no_coverage":
            assert reason[rid] == "ps1_no_coverage"
        else:  # every service answered: predicted unless the release's NaN rule rejects it
            assert rid not in reason or reason[rid].startswith("ps1_nan_fraction:"), (rid, reason[rid])
    assert any("failed: http 503 after 3 attempts" in r for r in reason.values())  # permanent faults hit some
    assert len(preds) >= 20

    # the predictions file is what `mantis-data evaluate` reads; the summaries agree with the PMFs
    p = read_predictions(out)
    assert len(p.z) == len(preds) and np.allclose(p.z, preds["z"])
    pmf = np.stack(preds["pmf"].to_numpy())
    from mantis_data.redshift import GRID

    assert np.allclose(pmf @ GRID, preds["z_mean"], atol=1e-5)
    assert ((preds["z_lo95"] <= preds["z_lo68"]) & (preds["z_hi68"] <= preds["z_hi95"])).all()
