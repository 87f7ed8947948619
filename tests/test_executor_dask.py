"""Shards on a Dask cluster (LocalCluster on loopback): byte-identical to the local build, a worker killed
mid-build, a client killed mid-build and rerun; a failing target rejected with its error; a crashed local
pool process retried."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import pandas as pd
import pytest
from dask.distributed import Client, LocalCluster

from builders.build import STAGE_DIR, build_release
from builders.executor import RECORD_DIR
from mantis_data.cutouts.local import LocalFitsSource
from mantis_data.release import AUDIT_NAME, MANIFEST_NAME, verify

# dask is imported unconditionally above: CI installs the build extra, so a missing dask fails, never skips.
REPO = Path(__file__).resolve().parents[1]


def shard_hashes(root: Path) -> dict[str, str]:
    files = json.loads((root / MANIFEST_NAME).read_text())["files"]
    return {k: v["sha256"] for k, v in files.items() if v["format"] in ("webdataset", "parquet")}


def n_shards(root: Path) -> int:
    files = json.loads((root / MANIFEST_NAME).read_text())["files"]
    return sum(v["format"] == "webdataset" for v in files.values())


class FailingSource(LocalFitsSource):
    """The demo's cutouts, except that reading one target raises."""

    def __init__(self, root: Path, bad: str):
        super().__init__(root)
        self.bad = bad

    def get(self, target_id, ra, dec):
        if target_id == self.bad:
            raise RuntimeError(f"boom for {target_id}\nsecond line")
        return super().get(target_id, ra, dec)


class CrashOnceSource(LocalFitsSource):
    """The demo's cutouts; the first read anywhere kills its process (a marker file makes it once)."""

    def __init__(self, root: Path, marker: Path):
        super().__init__(root)
        self.marker = marker

    def get(self, target_id, ra, dec):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return super().get(target_id, ra, dec)
        os.close(fd)
        os._exit(1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two worker processes, one thread each, on loopback; shared by the tests of this module."""
    scratch = tmp_path_factory.mktemp("dask-scratch")  # not the default /tmp/dask-scratch-space, which would stay
    with (
        dask.config.set({"temporary-directory": str(scratch)}),
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
            local_directory=scratch,
        ) as lc,
        Client(lc, set_as_default=False) as client,
    ):
        yield lc, client


def _build(demo: Path, out: Path, source=None, **kw) -> dict:
    return build_release(
        demo / "work" / "targets.parquet",
        source or LocalFitsSource(demo / "mock_inputs" / "cutouts"),
        out,
        dust="bh",
        shard_mb=8,
        progress=False,
        **kw,
    )


def _wait_for_records(records: Path, alive, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(records.glob("*.json")):
        assert alive(), "the build ended before any shard record appeared"
        assert time.monotonic() < deadline, "no shard record appeared"
        time.sleep(0.005)


def _signal_all(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def test_dask_build_is_byte_identical_to_the_local_build(cluster, demo_release, tmp_path):
    lc, client = cluster
    out = tmp_path / "dask"
    manifest = _build(demo_release, out, scheduler=lc.scheduler_address)
    assert shard_hashes(out) == shard_hashes(demo_release)
    assert manifest["total"] == json.loads((demo_release / MANIFEST_NAME).read_text())["total"]
    assert verify(out) == []
    # a rerun through an existing Client object rewrites nothing
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("mantis_shrimp*/data/*")}
    _build(demo_release, out, scheduler=client)
    assert {p: p.stat().st_mtime_ns for p in out.glob("mantis_shrimp*/data/*")} == mtimes


def test_killing_a_worker_mid_build_still_gives_the_identical_release(cluster, demo_release, tmp_path):
    lc, client = cluster
    out = tmp_path / "killed"
    pids = client.run(os.getpid)  # worker address -> pid
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["manifest"] = _build(demo_release, out, scheduler=lc.scheduler_address)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        _wait_for_records(out / STAGE_DIR / RECORD_DIR, thread.is_alive)
        _signal_all(pids.values(), signal.SIGSTOP)  # freeze both workers: the kill lands mid-build, surely
        n_done = len(list((out / STAGE_DIR / RECORD_DIR).glob("*.json")))
        busy = [w for w, keys in client.processing().items() if keys and w in pids]
        assert busy, "no worker was running a shard"
        os.kill(pids[busy[0]], signal.SIGKILL)  # its nanny starts a new worker; dask reruns the lost task
    finally:
        _signal_all(pids.values(), signal.SIGCONT)
    thread.join(timeout=180)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert n_done < n_shards(demo_release)
    assert shard_hashes(out) == shard_hashes(demo_release)
    assert verify(out) == []
    assert not list(out.glob("mantis_shrimp*/data/.*.tmp"))  # the dead worker's half-written files are gone


def test_killing_the_client_mid_build_and_rerunning_keeps_finished_shards(cluster, demo_release, tmp_path):
    lc, client = cluster
    out = tmp_path / "resumed"
    cmd = [
        sys.executable, "-m", "builders", "build",
        "--targets", str(demo_release / "work" / "targets.parquet"),
        "--cutouts", str(demo_release / "mock_inputs" / "cutouts"),
        "--out", str(out), "--shard-mb", "8", "--dust", "bh",
        "--scheduler", lc.scheduler_address,
    ]  # fmt: skip
    pids = list(client.run(os.getpid).values())
    log = tmp_path / "client.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_for_records(out / STAGE_DIR / RECORD_DIR, lambda: proc.poll() is None)
        _signal_all(pids, signal.SIGSTOP)
        proc.kill()
        proc.wait(timeout=30)
        finished = sorted(p.stem for p in (out / STAGE_DIR / RECORD_DIR).glob("*.json"))
    finally:
        _signal_all(pids, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    assert 0 < len(finished) < n_shards(demo_release), log.read_text()[-2000:]
    assert not (out / MANIFEST_NAME).exists()
    stage = out / STAGE_DIR  # a killed build leaves its finished shards in the stage, nothing in the release folders
    kept = [p.relative_to(stage) for name in finished for p in stage.glob(f"mantis_shrimp*/data/{name}.*")]
    assert len(kept) == 3 * len(finished)  # tar, its offset index, parquet
    mtimes = {p: (stage / p).stat().st_mtime_ns for p in kept}
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {p: (out / p).stat().st_mtime_ns for p in kept} == mtimes
    assert shard_hashes(out) == shard_hashes(demo_release)
    assert verify(out) == []


def test_a_target_that_raises_is_rejected_with_its_error(cluster, demo_release, tmp_path):
    lc, _ = cluster
    targets = pd.read_parquet(demo_release / "work" / "targets.parquet")
    bad = str(targets["target_id"].iloc[0])
    out = tmp_path / "failing"
    source = FailingSource(demo_release / "mock_inputs" / "cutouts", bad)
    manifest = _build(demo_release, out, source=source, scheduler=lc.scheduler_address)
    audit = pd.read_parquet(out / AUDIT_NAME).set_index("target_id")
    assert audit.loc[bad, "cutout_reject_reason"] == f"error: RuntimeError: boom for {bad}"
    assert not audit.loc[bad, "in_release"]
    assert manifest["cutout_rejections"].get("error") == 1
    assert verify(out) == []
    # only the bad target's shard differs from the reference
    ours, ref = shard_hashes(out), shard_hashes(demo_release)
    assert ours.keys() == ref.keys()
    assert len([k for k in ours if ours[k] != ref[k]]) == 2  # its tar and its parquet file


def test_a_crashed_local_worker_process_is_retried(demo_release, tmp_path):
    out = tmp_path / "crash"
    source = CrashOnceSource(demo_release / "mock_inputs" / "cutouts", tmp_path / "crashed")
    _build(demo_release, out, source=source, workers=2)
    assert (tmp_path / "crashed").exists()  # a process did die
    assert shard_hashes(out) == shard_hashes(demo_release)
    assert verify(out) == []
