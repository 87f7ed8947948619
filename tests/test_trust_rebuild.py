"""Issue 11 item 1: a shard's fingerprint covers every input its bytes depend on; a rerun rebuilds exactly
the shards whose inputs changed, says which and why, and ``verify`` calls a release with changed inputs stale."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from builders.build import build_release
from builders.catalogs.compile import write_outputs
from builders.executor import RECORD_DIR
from mantis_data.cutouts.layout import cutout_path
from mantis_data.cutouts.local import LocalFitsSource
from mantis_data.release import AUDIT_NAME, MANIFEST_NAME, verify

REPO = Path(__file__).resolve().parent.parent
N_MOVED = 6
N_TARGETS = 50


def _shard_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob("mantis_shrimp*/data/*"))}


def _inodes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_ino for p in sorted(root.glob("mantis_shrimp*/data/*"))}


def _shard_of(root: Path) -> dict[str, str]:
    out = {}
    for rec in (root / RECORD_DIR).glob("*.json"):
        data = json.loads(rec.read_text())
        for tid in [*data["samples"], *data["rejections"]]:
            out[tid] = rec.stem
    return out


def _build(targets, cache, out, lines, **kw):
    return build_release(targets, LocalFitsSource(cache, **kw), out, dust="bh", shard_mb=4, progress=False, log=lines.append)


@pytest.fixture(scope="module")
def world(demo_release, tmp_path_factory):
    """(targets.parquet of 50 demo targets, a private copy of the demo's cutout cache, a scratch folder)."""
    tmp = tmp_path_factory.mktemp("rebuild")
    cache = tmp / "cutouts"
    shutil.copytree(demo_release / "mock_inputs" / "cutouts", cache)
    targets = pd.read_parquet(demo_release / "work" / "targets.parquet").sort_values("target_id").iloc[:N_TARGETS]
    audit = pd.read_parquet(demo_release / "work" / "catalog_audit.parquet")
    audit = audit[audit["accepted"] & audit["target_id"].isin(targets["target_id"])]
    paths = write_outputs(targets.reset_index(drop=True), audit.reset_index(drop=True), tmp / "work")
    return paths["targets"], cache, tmp


def test_moving_unwise_files_out_and_back_rebuilds_exactly_their_shards(world):
    targets, cache, tmp = world
    out = tmp / "release"
    lines: list[str] = []
    fresh = _build(targets, cache, out, lines)
    fresh_bytes = _shard_bytes(out)
    assert lines == [f"shards: 0 rebuilt, {len(list((out / RECORD_DIR).glob('*.json')))} new, 0 unchanged (kept)"]
    total = fresh["total"]
    audit = pd.read_parquet(out / AUDIT_NAME)
    moved = sorted(audit.loc[audit["in_release"], "target_id"])[:N_MOVED]
    where = _shard_of(out)
    touched = {where[t] for t in moved}
    assert 1 < len(touched) < len(set(where.values()))  # some shards, not all
    aside = tmp / "aside"
    aside.mkdir()
    for t in moved:
        os.rename(cutout_path(cache, "unwise", t), aside / f"{t}.fits")

    # the release no longer matches its inputs: verify says so, naming the shards
    problems = verify(out)
    assert sorted(p.split(":")[1].strip() for p in problems) == sorted(touched), problems
    assert all(p.startswith("stale: ") and "cutout file" in p for p in problems)

    lines.clear()
    before = _inodes(out)
    m = _build(targets, cache, out, lines)
    assert m["total"] == total - N_MOVED and m["cutout_rejections"]["unwise_missing"] == N_MOVED
    rebuilt = {ln.split()[1].rstrip(":") for ln in lines if ln.startswith("rebuilt ")}
    assert rebuilt == touched
    assert all(ln.endswith("cutout files changed") or ln.endswith("cutout file changed") for ln in lines[:-1])
    after = _inodes(out)
    for rel, ino in after.items():  # the untouched shards are the very same files (hard links), not rewritten
        assert (ino == before[rel]) == (Path(rel).name.split(".")[0] not in touched), rel
    assert verify(out) == []

    # move them back: stale again; the rebuild names the same shards and gives the fresh build's bytes
    for t in moved:
        os.rename(aside / f"{t}.fits", cutout_path(cache, "unwise", t))
    assert len(verify(out)) == len(touched)
    lines.clear()
    m = _build(targets, cache, out, lines)
    assert m["total"] == total
    assert {ln.split()[1].rstrip(":") for ln in lines if ln.startswith("rebuilt ")} == touched
    assert _shard_bytes(out) == fresh_bytes
    assert verify(out) == []


def test_touched_files_are_not_changes_but_parameters_are(world):
    targets, cache, tmp = world
    out = tmp / "params"
    lines: list[str] = []
    _build(targets, cache, out, lines)
    n = len(list((out / RECORD_DIR).glob("*.json")))
    audit = pd.read_parquet(out / AUDIT_NAME)
    tid = audit.loc[audit["in_release"], "target_id"].iloc[0]
    path = cutout_path(cache, "galex", tid)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))  # same bytes, newer
    lines.clear()
    _build(targets, cache, out, lines)
    assert lines == [f"shards: 0 rebuilt, 0 new, {n} unchanged (kept)"]
    lines.clear()
    _build(targets, cache, out, lines, max_offset_px=2.0)  # another build parameter: every shard is rebuilt
    assert sum(ln.startswith("rebuilt ") for ln in lines) == n
    assert all(ln.endswith(": parameters changed") for ln in lines[:-1])


def test_cli_build_prints_what_it_rebuilt(world):
    targets, cache, tmp = world
    out = tmp / "cli"
    cmd = [sys.executable, "-m", "builders", "build", "--targets", str(targets), "--cutouts", str(cache),
           "--out", str(out), "--shard-mb", "4", "--dust", "bh", "--workers", "1"]  # fmt: skip
    _build(targets, cache, out, [])  # the same build as the command's, in-process (cheaper)
    audit = pd.read_parquet(out / AUDIT_NAME)
    tid = audit.loc[audit["in_release"], "target_id"].iloc[0]
    shard = _shard_of(out)[tid]
    cutout_path(cache, "ps1", tid, "r").write_bytes(cutout_path(cache, "ps1", tid, "r").read_bytes()[:-2880])
    verify_run = subprocess.run([sys.executable, "-m", "builders", "verify", str(out)], cwd=REPO, capture_output=True, text=True)
    assert verify_run.returncode == 1 and f"stale: {shard}: 1 cutout file changed" in verify_run.stdout
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"rebuilt {shard}: 1 cutout file changed" in run.stdout
    assert json.loads((out / MANIFEST_NAME).read_text())["cutout_rejections"].get("ps1_unreadable", 0) >= 1
