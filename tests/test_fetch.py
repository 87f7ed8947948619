"""Fetching cutouts from the loopback mock services: faults, retries, resume after SIGKILL, and the build.

Acceptance: (1) 500 targets with each fault kind in ~10% of requests end ok / no_coverage / failed with
a reason, exactly as the server's plan says they should, with no corrupt file in the cache; (2) a fetch
killed with SIGKILL and rerun fetches no completed stamp twice and ends with the same files as an
uninterrupted run; (3) a release built from the fetch cache is byte-identical to one built from the
mock's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from builders.__main__ import main
from builders.build import build_release
from builders.catalogs.compile import compile_targets, find_catalogs, write_outputs
from builders.mock.catalogs import write_catalogs
from builders.mock.cutouts import render_ps1, write_cutouts
from builders.mock.server import FaultPlan, MockServer
from builders.mock.sky import MockSky
from mantis_data.bands import SURVEY_ORDER, SURVEYS, ps1_zero_point
from mantis_data.cutouts.client import (
    USER_AGENT,
    HttpClient,
    RequestFailed,
    RetryPolicy,
    TokenBucket,
    centre_offset_px,
    parse_retry_after,
)
from mantis_data.cutouts.fetch import (
    MANIFEST_NAME,
    FetchConfig,
    HttpSource,
    ManifestWriter,
    fetch_cutouts,
    read_manifest,
)
from mantis_data.cutouts.fits import read_legacy_cube, read_ps1_cutout, wcs_centre_offset_pixels
from mantis_data.cutouts.layout import cutout_path
from mantis_data.cutouts.local import LocalFitsSource
from mantis_data.errors import InputDataError
from mantis_data.release import AUDIT_NAME
from mantis_data.release import MANIFEST_NAME as RELEASE_MANIFEST

REPO = Path(__file__).resolve().parents[1]
ALL_FAULTS = ("slow", "429", "503", "drop", "truncate", "html")
ATTEMPTS = 6  # transient faults last 1-2 attempts; the margin absorbs a loaded machine's spurious timeouts
STATUS_RE = re.compile(r"^(ok|no_coverage|failed: .+ after \d+ attempts?( \[[a-z,]+\])?)$")
LAYER_SURVEY = {"galex": "galex", "unwise-neo7": "unwise"}


def fast_config(srv: MockServer, **kw) -> FetchConfig:
    """Client settings for loopback tests: no rate limit, short timeouts and backoff."""
    base = dict(
        ps1_url=srv.ps1_url,
        legacy_url=srv.legacy_url,
        concurrency=8,
        rate=None,
        timeout_s=0.15,
        attempts=5,
        backoff_s=0.005,
        backoff_max_s=0.05,
        seed=0,
    )
    base.update(kw)
    return FetchConfig(**base)


def checksums(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.fits"))
    }


def shard_hashes(root: Path) -> dict[str, str]:
    files = json.loads((root / RELEASE_MANIFEST).read_text())["files"]
    return {k: v["sha256"] for k, v in files.items() if v["format"] in ("webdataset", "parquet")}


def stamp_path(rec: dict, by_pos: dict[tuple[str, str], str]) -> str:
    """Cache path (relative) of the stamp a server log record asked for."""
    q = rec["params"]
    tid = by_pos[(repr(float(q["ra"])), repr(float(q["dec"])))]
    if rec["endpoint"] == "fitscut":
        band = re.search(r"\.stk\.([grizy])\.", q["red"]).group(1)
        return cutout_path(".", "ps1", tid, band).as_posix()
    return cutout_path(".", LAYER_SURVEY[q["layer"]], tid).as_posix()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """~500 targets compiled from a mock sky's catalogs, and the mock's own cutout folder for them."""
    root = tmp_path_factory.mktemp("fetch")
    sky = MockSky(600, seed=5)
    write_catalogs(sky, root / "catalogs")
    targets, audit = compile_targets(find_catalogs(root / "catalogs"))
    paths = write_outputs(targets, audit, root / "work")
    ref = root / "ref"
    result = write_cutouts(sky, targets[["target_id", "ra", "dec"]], ref, progress=False)
    return SimpleNamespace(
        root=root,
        sky=sky,
        targets=targets[["target_id", "ra", "dec"]].reset_index(drop=True),
        targets_path=paths["targets"],
        ref=ref,
        truth=result["truth"].to_pandas().set_index("target_id"),
    )


@pytest.fixture(scope="module")
def faulty(world):
    """The whole target list fetched through every fault kind at ~10% of requests each."""
    plan = FaultPlan(transient={k: 0.1 for k in ALL_FAULTS}, max_repeats=2, seed=3, retry_after_s=0.005, slow_s=0.3)
    cache = world.root / "cache"
    with MockServer(world.sky, plan) as srv:
        summary = fetch_cutouts(world.targets, cache, fast_config(srv, attempts=ATTEMPTS), progress=False)
        time.sleep(0.05)
        expected = {
            t: srv.expected_status(r, d, ATTEMPTS) for t, r, d in zip(world.targets.target_id, world.targets.ra, world.targets.dec, strict=True)
        }
        log = list(srv.log)
    return SimpleNamespace(cache=cache, summary=summary, log=log, expected=expected)


# ---------------------------------------------------------------------------------------------
# Acceptance 1: every target resolved as the server's plan says; nothing corrupt in the cache


def test_faulty_fetch_ends_as_the_server_would_serve(world, faulty):
    n = len(world.targets)
    assert n >= 450
    manifest = read_manifest(faulty.cache).set_index("target_id")
    assert sorted(manifest.index) == sorted(world.targets.target_id)
    for s in SURVEY_ORDER:
        bad = [v for v in manifest[s] if not STATUS_RE.match(v)]
        assert not bad, bad[:3]
    got = {t: {s: manifest.at[t, s].split(":")[0] for s in SURVEY_ORDER} for t in manifest.index}
    assert got == faulty.expected
    ok = np.mean([all(v == "ok" for v in e.values()) for e in faulty.expected.values()])
    assert faulty.summary["targets_ok"] / n == ok
    assert 0.85 < ok < 1.0  # the plan lets most through, but not all (no coverage, planted corrupt files)

    # each fault kind was injected into ~10% of first requests, and retries got past them
    first = [r for r in faulty.log if r["attempt"] == 0]
    kinds = Counter(r["fault"] for r in first)
    for kind in ALL_FAULTS:
        assert 0.06 < kinds[kind] / len(first) < 0.14, (kind, kinds[kind], len(first))
    counters = faulty.summary["counters"]
    for outcome in ("timeout", "http 429", "http 503", "truncated body", "invalid"):
        assert counters[outcome] > 0, outcome

    # the planted corrupt PS1 files fail with the reason, after every attempt, naming the band
    truth = world.truth
    for tid in truth.index[truth["ps1_corrupt_band"] != ""]:
        status = manifest.at[tid, "ps1"]
        assert status.startswith("failed: unreadable: truncated data") and status.endswith(
            f"after {ATTEMPTS} attempts [{truth.at[tid, 'ps1_corrupt_band']}]"
        ), status
    assert (manifest.loc[~truth.loc[manifest.index, "ps1_covered"], "ps1"] == "no_coverage").all()


def test_faulty_fetch_leaves_no_corrupt_file(world, faulty):
    cache, ref = faulty.cache, world.ref
    manifest = read_manifest(cache).set_index("target_id")
    files = {p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()} - {MANIFEST_NAME, ".lock"}  # .lock: the cache lock (names the last fetch)
    assert not (cache / ".tmp").exists()
    assert all(f.endswith(".fits") for f in files)
    # byte-identical to what the mock writes, and each parses with the right shape
    for rel in sorted(files):
        data = (cache / rel).read_bytes()
        assert data == (ref / rel).read_bytes(), rel
    # exactly the files of the surveys that ended ok (plus the good bands of a failed PS1 target)
    for tid, row in manifest.iterrows():
        for s in ("galex", "unwise"):
            assert (cutout_path(".", s, tid).as_posix() in files) == (row[s] == "ok")
        have = [b for b in SURVEYS["ps1"].bands if cutout_path(".", "ps1", tid, b).as_posix() in files]
        if row["ps1"] == "ok":
            assert len(have) == 5
        elif row["ps1"] == "no_coverage":
            assert have == []
        else:
            failed = row["ps1"].rsplit("[", 1)[1].rstrip("]").split(",")
            assert sorted(have + failed) == sorted(SURVEYS["ps1"].bands)
    for rel in [f for f in files if f.startswith("ps1/")][:25]:
        img, _, header = read_ps1_cutout((cache / rel).read_bytes())
        assert img.shape == (170, 170)
    # the viewer's all-zero GALEX cube (no coverage) is a valid cutout: ok, not no_coverage
    uncovered = world.truth.index[~world.truth["galex_covered"]]
    assert len(uncovered) > 0 and (manifest.loc[uncovered, "galex"] == "ok").all()
    cube, _ = read_legacy_cube(cutout_path(cache, "galex", uncovered[0]).read_bytes(), "galex")
    assert not cube.any()


# ---------------------------------------------------------------------------------------------
# Acceptance 3: a release from the fetch cache equals one from the mock's files


def test_release_from_fetch_cache_is_byte_identical(world, faulty):
    kw = dict(dust="bh", shard_mb=8, workers=1, progress=False)
    fetched = build_release(world.targets_path, LocalFitsSource(faulty.cache), world.root / "rel_fetch", **kw)
    direct = build_release(world.targets_path, LocalFitsSource(world.ref), world.root / "rel_ref", **kw)
    assert fetched["total"] == direct["total"] > 400
    hashes = shard_hashes(world.root / "rel_fetch")
    assert hashes and hashes == shard_hashes(world.root / "rel_ref")
    # the audit carries the fetch's own reasons
    audit = pd.read_parquet(world.root / "rel_fetch" / AUDIT_NAME)
    audit = audit[audit["accepted"]].set_index("target_id")
    truth = world.truth
    no_cov = truth.index[~truth["ps1_covered"]]
    assert (audit.loc[no_cov, "cutout_reject_reason"] == "ps1_no_coverage").all()
    corrupt = truth.index[truth["ps1_corrupt_band"] != ""]
    assert audit.loc[corrupt, "cutout_reject_reason"].str.startswith("ps1_failed: unreadable: truncated data").all()


def test_rerun_skips_what_is_done_and_retries_what_failed(world, faulty):
    manifest = read_manifest(faulty.cache).set_index("target_id")
    failed = manifest.index[manifest["ps1"].str.startswith("failed")]
    assert len(failed) > 0
    by_pos = {(repr(float(r)), repr(float(d))): t for t, r, d in zip(world.targets.target_id, world.targets.ra, world.targets.dec, strict=True)}
    with MockServer(world.sky) as srv:
        summary = fetch_cutouts(world.targets, faulty.cache, fast_config(srv, attempts=ATTEMPTS), progress=False)
        time.sleep(0.05)
        log = list(srv.log)
    assert summary["already_done"] == len(world.targets) - len(failed) and summary["processed"] == len(failed)
    asked = {by_pos[(repr(float(r["params"]["ra"])), repr(float(r["params"]["dec"])))] for r in log}
    assert asked == set(failed)
    stamps = [stamp_path(r, by_pos) for r in log if r["stamp"]]
    truth = world.truth
    assert sorted(set(stamps)) == sorted(cutout_path(".", "ps1", t, truth.at[t, "ps1_corrupt_band"]).as_posix() for t in failed)
    after = read_manifest(faulty.cache).set_index("target_id")
    assert (after.loc[failed, "ps1"] == manifest.loc[failed, "ps1"]).all()  # still broken on the server
    have, ref = checksums(faulty.cache), checksums(world.ref)
    assert have == {k: ref[k] for k in have}


# ---------------------------------------------------------------------------------------------
# Permanent faults, no retry on 4xx, Retry-After, timeouts, limits


def test_permanent_faults_and_no_retry_on_4xx(world, tmp_path):
    targets = world.targets.iloc[:60]
    plan = FaultPlan(permanent={"503": 0.06, "404": 0.06, "html": 0.04}, seed=9, retry_after_s=0.005)
    with MockServer(world.sky, plan) as srv:
        # no slow answers in this plan: a generous timeout, so a loaded machine does not add retries to the counts
        fetch_cutouts(targets, tmp_path / "c", fast_config(srv, attempts=3, timeout_s=5), progress=False)
        time.sleep(0.05)
        expected = {t: srv.expected_status(r, d, 3) for t, r, d in zip(targets.target_id, targets.ra, targets.dec, strict=True)}
        log = list(srv.log)
    manifest = read_manifest(tmp_path / "c").set_index("target_id")
    assert {t: {s: manifest.at[t, s].split(":")[0] for s in SURVEY_ORDER} for t in manifest.index} == expected
    statuses = [v for s in SURVEY_ORDER for v in manifest[s]]
    assert any(v.startswith("failed: http 404 after 1 attempt") and "attempts" not in v for v in statuses)
    assert any(v.startswith("failed: http 503 after 3 attempts") for v in statuses)
    assert any(v.startswith("failed: unreadable: not FITS (an HTML page) after 3 attempts") for v in statuses)
    per_key = Counter(r["key"] for r in log)
    truth = world.truth
    corrupt = {
        srv.ps1_keys(truth.at[t, "ra"], truth.at[t, "dec"])[1 + SURVEYS["ps1"].bands.index(truth.at[t, "ps1_corrupt_band"])]
        for t in targets.target_id
        if truth.at[t, "ps1_corrupt_band"]
    }
    for key, n in per_key.items():
        kind, _ = plan.assignment(key)
        want = 3 if key in corrupt else {"404": 1, "503": 3, "html": 3}.get(kind, 1)
        assert n == want, (key, kind, n)
    # the build's source reports the fetch's reasons for surveys without files
    source = LocalFitsSource(tmp_path / "c")
    for t, r, d in zip(targets.target_id, targets.ra, targets.dec, strict=True):
        stamps = source.get(t, r, d)
        for s in SURVEY_ORDER:
            if manifest.at[t, s] != "ok":
                assert stamps.failures[s] == manifest.at[t, s]
            else:
                assert s not in stamps.failures


def test_retry_after_is_honoured_host_wide(world, tmp_path):
    targets = world.targets.iloc[:3]
    plan = FaultPlan(transient={"429": 1.0}, max_repeats=1, retry_after_s=0.3)
    with MockServer(world.sky, plan) as srv:
        cfg = fast_config(srv, surveys=("galex", "unwise"), backoff_s=0.001, timeout_s=5)
        fetch_cutouts(targets, tmp_path / "c", cfg, progress=False)
        time.sleep(0.05)
        log = list(srv.log)
    assert len(log) == 12 and sum(r["status"] == 429 for r in log) == 6
    # once a 429 has reached the client, nothing goes to that host for Retry-After seconds
    refusals = [r for r in log if r["status"] == 429]
    for r in log:
        if r["status"] == 200:
            for q in refusals:
                if q["t1"] < r["t0"] - 0.05:
                    assert r["t0"] - q["t_send"] >= 0.3, (r["t0"] - q["t_send"])
    assert (read_manifest(tmp_path / "c")[["galex", "unwise"]] == "ok").all().all()


def test_timeouts_are_retried(world, tmp_path):
    targets = world.targets.iloc[:2]
    plan = FaultPlan(transient={"slow": 1.0}, max_repeats=1, slow_s=0.8)
    with MockServer(world.sky, plan) as srv:
        summary = fetch_cutouts(targets, tmp_path / "c", fast_config(srv, surveys=("galex", "unwise"), timeout_s=0.3), progress=False)
    assert summary["counters"]["timeout"] >= 4
    manifest = read_manifest(tmp_path / "c")
    assert (manifest[["galex", "unwise"]] == "ok").all().all() and (manifest["attempts_galex"] >= 2).all()
    assert manifest["ps1"].isna().all()  # not asked for


def test_rate_and_concurrency_limits_and_user_agent(world, tmp_path):
    targets = world.targets.iloc[:6]
    with MockServer(world.sky) as srv:
        cfg = fast_config(srv, rate=40.0, concurrency=2, timeout_s=5)
        fetch_cutouts(targets, tmp_path / "c", cfg, progress=False)
        time.sleep(0.05)
        log = sorted(srv.log, key=lambda r: r["t0"])
    assert len(log) >= 40
    span = log[-1]["t0"] - log[0]["t0"]
    assert span >= (len(log) - 1) / 40.0 * 0.9
    # [t0, t_send] of each request lies inside the client's hold on a concurrency slot
    events = sorted([(r["t0"], 1) for r in log] + [(r["t_send"], -1) for r in log])
    depth = peak = 0
    for _, step in events:
        depth += step
        peak = max(peak, depth)
    assert peak <= 2
    assert {r["user_agent"] for r in log} == {USER_AGENT} and "mantis" in USER_AGENT.lower()


# ---------------------------------------------------------------------------------------------
# Acceptance 2: SIGKILL midway, rerun


def _count_fits(root: Path) -> int:
    n = 0
    for _, _, names in os.walk(root):
        n += sum(name.endswith(".fits") for name in names)
    return n


def test_sigkill_midway_then_rerun(world, tmp_path):
    sub = world.targets.iloc[:100]
    tpath = tmp_path / "targets.parquet"
    sub.to_parquet(tpath)
    by_pos = {(repr(float(r)), repr(float(d))): t for t, r, d in zip(sub.target_id, sub.ra, sub.dec, strict=True)}
    plan = FaultPlan(transient={k: 0.05 for k in ("429", "503", "drop", "truncate", "html")}, max_repeats=2, seed=11, retry_after_s=0.005)
    cache, clean = tmp_path / "cache", tmp_path / "clean"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with MockServer(world.sky, plan) as srv:
        cmd = [
            sys.executable, "-m", "builders", "fetch", "--targets", str(tpath), "--cache", str(cache),
            "--ps1-url", srv.ps1_url, "--legacy-url", srv.legacy_url, "--timeout", "5", "--backoff", "0.01",
            "--no-progress",
        ]  # fmt: skip
        proc = subprocess.Popen([*cmd, "--rate", "100"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _count_fits(cache) < 250 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
        time.sleep(0.1)
        before = checksums(cache)
        assert 250 <= len(before) < 600  # killed midway
        n_first = len(srv.log)

        rerun = subprocess.run([*cmd, "--rate", "0"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        time.sleep(0.05)
        second = list(srv.log[n_first:])
        refetched = [stamp_path(r, by_pos) for r in second if r["stamp"] and stamp_path(r, by_pos) in before]
        assert refetched == []

        fetch_cutouts(sub, clean, fast_config(srv, timeout_s=5), progress=False)
        log = list(srv.log)
    final = checksums(cache)
    assert final == checksums(clean) and len(final) > len(before)
    # a completed (kept) stamp was served twice only if it was in flight at the kill
    kept = set(final)
    served: Counter[str] = Counter(
        stamp_path(r, by_pos)
        for r in log[:n_first] + second
        if r["stamp"] and r["status"] == 200 and r["fault"] is None and r["complete"]
    )
    twice = [p for p, k in served.items() if k > 1 and p in kept]
    assert len(twice) <= 16, twice
    a = read_manifest(cache).set_index("target_id")[list(SURVEY_ORDER)].sort_index()
    b = read_manifest(clean).set_index("target_id")[list(SURVEY_ORDER)].sort_index()
    pd.testing.assert_frame_equal(a, b)
    assert not list(cache.rglob("*.tmp*")) and not (cache / ".tmp").exists()


# ---------------------------------------------------------------------------------------------
# Sources, manifest, client pieces, user errors


def test_http_source_matches_local_files_and_linearises(world):
    truth = world.truth
    tid = truth.index[truth["ps1_covered"] & (truth["ps1_corrupt_band"] == "")][0]
    ra, dec = float(truth.at[tid, "ra"]), float(truth.at[tid, "dec"])
    local = LocalFitsSource(world.ref).get(tid, ra, dec)
    with MockServer(world.sky) as srv:
        stamps = HttpSource(fast_config(srv, timeout_s=5)).get(tid, ra, dec)
    assert stamps.failures == {}
    for s in SURVEY_ORDER:
        np.testing.assert_array_equal(getattr(stamps, s), getattr(local, s))
    np.testing.assert_array_equal(stamps.ps1_zp, local.ps1_zp)
    _, zp, header = read_ps1_cutout(render_ps1(world.sky, ra, dec, "g"))
    assert stamps.ps1_zp[0] == zp == ps1_zero_point(header["EXPTIME"])
    with MockServer(world.sky, ps1_compressed=True) as srv:
        comp = HttpSource(fast_config(srv, timeout_s=5)).get(tid, ra, dec)
    np.testing.assert_allclose(comp.ps1, local.ps1, atol=1e-3 * np.nanmax(np.abs(local.ps1)))
    south = truth.index[~truth["ps1_covered"]][0]
    with MockServer(world.sky) as srv:
        miss = HttpSource(fast_config(srv, timeout_s=5)).get(south, truth.at[south, "ra"], truth.at[south, "dec"])
    assert miss.failures == {"ps1": "no_coverage"} and miss.galex is not None


def test_manifest_is_append_only_and_survives_a_torn_line(tmp_path):
    rec = {"ra": 1.0, "dec": 2.0, "galex": "ok", "ps1": "ok", "unwise": "ok", "attempts": {"galex": 1, "ps1": 6, "unwise": 1}, "fetched_at": "x"}
    with ManifestWriter(tmp_path) as w:
        w.append({"target_id": "a", **rec, "ps1": "failed: http 503 after 5 attempts [g]"})
        w.append({"target_id": "b", **rec})
        w.append({"target_id": "a", **rec})
    with open(tmp_path / MANIFEST_NAME, "ab") as f:
        f.write(b'{"target_id": "c", "ra": 1.0, "de')  # a power cut mid-line
    m = read_manifest(tmp_path).set_index("target_id")
    assert sorted(m.index) == ["a", "b"] and m.at["a", "ps1"] == "ok" and m.at["a", "attempts_ps1"] == 6
    with ManifestWriter(tmp_path) as w:
        w.append({"target_id": "d", **rec, "galex": "no_coverage"})
    m = read_manifest(tmp_path).set_index("target_id")
    assert sorted(m.index) == ["a", "b", "d"] and m.at["d", "galex"] == "no_coverage"


def test_client_pieces():
    assert parse_retry_after("120") == 120.0 and parse_retry_after("0.25") == 0.25
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    now = [0.0]
    bucket = TokenBucket(rate=10.0, burst=2, clock=lambda: now[0])
    assert [round(bucket.reserve(), 3) for _ in range(4)] == [0.0, 0.0, 0.1, 0.2]
    bucket.pause(5.0)
    assert bucket.reserve() == pytest.approx(5.0)
    policy = RetryPolicy(backoff_s=1.0, backoff_max_s=8.0, jitter=0.5)
    import random

    rng = random.Random(0)
    for attempt, base in ((1, 1.0), (2, 2.0), (4, 8.0), (9, 8.0)):
        d = [policy.delay(attempt, rng) for _ in range(200)]
        assert base * 0.5 <= min(d) and max(d) <= base * 1.5 and np.std(d) > 0
    # the fast TAN path agrees with astropy, also for a rotated CDELT/PC header
    sky = MockSky(60, seed=1)
    i = int(np.flatnonzero(sky.ps1_covered(sky.ra, sky.dec))[0])
    _, _, header = read_ps1_cutout(render_ps1(sky, sky.ra[i], sky.dec[i], "r"))
    for h in (header, _pc_header(header)):
        for d in ((0, 0), (1e-4, -2e-4), (-3e-4, 1e-4)):
            ra, dec = sky.ra[i] + d[0], sky.dec[i] + d[1]
            assert centre_offset_px(h, ra, dec) == pytest.approx(wcs_centre_offset_pixels(h, ra, dec), abs=1e-6)


def _pc_header(header):
    h = header.copy()
    for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        del h[k]
    th = np.radians(20.0)
    h["CDELT1"], h["CDELT2"] = -0.25 / 3600, 0.25 / 3600
    h["PC1_1"], h["PC1_2"], h["PC2_1"], h["PC2_2"] = np.cos(th), -np.sin(th), np.sin(th), np.cos(th)
    return h


def test_connection_refused_fails_with_a_reason():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    client = HttpClient(retry=RetryPolicy(attempts=2, backoff_s=0.001), timeout_s=1)
    with pytest.raises(RequestFailed) as info:
        client.get(f"http://127.0.0.1:{port}/x")
    assert info.value.status == "failed: connection refused after 2 attempts"


def test_user_errors_are_clear(world, tmp_path, capsys):
    with pytest.raises(InputDataError, match="--ps1-url"):
        fetch_cutouts(world.targets.iloc[:1], tmp_path / "c", FetchConfig(ps1_url="ftp://example.org"), progress=False)
    with pytest.raises(InputDataError, match="concurrency"):
        FetchConfig(concurrency=0).make_client()
    with pytest.raises(InputDataError, match="surveys"):
        FetchConfig(surveys=("sdss",))
    bad = world.targets.iloc[:2].copy()
    bad.loc[bad.index[1], "target_id"] = bad["target_id"].iloc[0]
    with pytest.raises(InputDataError, match="appears twice"):
        fetch_cutouts(bad, tmp_path / "c", progress=False)
    assert main(["fetch", "--targets", str(tmp_path / "nope.parquet"), "--cache", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err
