"""Issue 11 item 6: a killed build client leaves no pool worker behind; damaged inputs give one-line
errors naming the file (and line); ``verify`` names a missing shard without a misleading count line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builders.build import STAGE_DIR
from builders.executor import RECORD_DIR
from mantis_data.cutouts.fetch import MANIFEST_NAME as FETCH_MANIFEST
from mantis_data.cutouts.fetch import read_manifest
from mantis_data.errors import InputDataError

REPO = Path(__file__).resolve().parent.parent


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's wait is missing


def _build_cmd(demo: Path, out: Path, targets: Path | None = None, workers: int = 2) -> list[str]:
    return [sys.executable, "-m", "builders", "build", "--targets", str(targets or demo / "work" / "targets.parquet"),
            "--cutouts", str(demo / "mock_inputs" / "cutouts"), "--out", str(out), "--shard-mb", "4",
            "--dust", "bh", "--workers", str(workers)]  # fmt: skip


def test_killing_the_client_ends_its_pool_workers(demo_release, tmp_path):
    out = tmp_path / "orphans"
    proc = subprocess.Popen(_build_cmd(demo_release, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        records = out / STAGE_DIR / RECORD_DIR
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while not (records.exists() and any(records.glob("*.json")) and len(workers) >= 2):
            assert proc.poll() is None, "the build ended before the kill"
            assert time.monotonic() < deadline
            workers = _children(proc.pid)
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        t0 = time.monotonic()
        while any(_alive(p) for p in workers) and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        left = [p for p in workers if _alive(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert left == [], f"pool workers {left} outlived their client"
    assert time.monotonic() - t0 < 5


def test_truncated_targets_parquet_is_one_line_naming_it(demo_release, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(demo_release / "work", work)
    path = work / "targets.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    run = subprocess.run(_build_cmd(demo_release, tmp_path / "out", path), cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and str(path) in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "bad, why",
    [({"ra": "10.5"}, "ra is '10.5', not a number"), ({"ps1": 3}, "ps1 is 3, not a string"),
     ({"attempts": {"ps1": "two"}}, "attempts.ps1 is 'two', not an integer")],
)  # fmt: skip
def test_fetch_manifest_line_with_wrong_types_names_file_and_line(tmp_path, bad, why):
    cache = tmp_path / "cache"
    cache.mkdir()
    good = {"target_id": "sdss-1", "ra": 10.0, "dec": 1.0, "galex": "ok", "ps1": "ok", "unwise": "ok",
            "attempts": {"galex": 1, "ps1": 6, "unwise": 1}, "fetched_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    lines = [json.dumps(good), json.dumps({**good, "target_id": "sdss-2", **bad})]
    (cache / FETCH_MANIFEST).write_text("\n".join(lines) + "\n")
    with pytest.raises(InputDataError) as info:
        read_manifest(cache)
    assert str(info.value).startswith(f"{cache / FETCH_MANIFEST}:2: {why}")
    targets = tmp_path / "targets.parquet"
    import pandas as pd

    pd.DataFrame({"target_id": ["sdss-1"], "ra": [10.0], "dec": [1.0]}).to_parquet(targets)
    run = subprocess.run(
        [sys.executable, "-m", "builders", "fetch", "--targets", str(targets), "--cache", str(cache), "--no-progress",
         "--ps1-url", "http://127.0.0.1:9", "--legacy-url", "http://127.0.0.1:9"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and f"{FETCH_MANIFEST}:2: {why}" in run.stderr


def test_verify_names_a_missing_or_resized_shard_and_nothing_else(demo_release, tmp_path):
    release = tmp_path / "release"
    shutil.copytree(demo_release, release, ignore=shutil.ignore_patterns("mock_inputs", "work"))
    tars = sorted((release / "mantis_shrimp" / "data").glob("train-*.tar"))
    tars[1].unlink()
    parquet = sorted((release / "mantis_shrimp-parquet" / "data").glob("test-*.parquet"))[0]
    with open(parquet, "ab") as fh:
        fh.write(b"\0" * 10)
    run = subprocess.run([sys.executable, "-m", "builders", "verify", str(release)], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 1
    rel_tar = tars[1].relative_to(release).as_posix()
    rel_pq = parquet.relative_to(release).as_posix()
    assert run.stdout.splitlines() == [
        f"FAIL {rel_pq}: size {parquet.stat().st_size} bytes, manifest says {parquet.stat().st_size - 10}",
        f"FAIL {rel_tar}: missing",
        f"2 problem(s) in {release}",
    ]
