"""Issue 11 item 4: never half a release; one build or fetch per folder at a time.

A build over an older release (other parameters) is killed at several points: before any shard, after
the first, half way, and inside the final swap (between each pair of renames). At each point
``datasets.load_dataset`` on each dataset folder either fails or returns exactly one complete release
(the old or the new, every split, no id twice), never a mix. Then a second concurrent build or fetch on
the same folder exits 2 naming the holder; a lock left by a dead process is taken over.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import builders.build as build_mod
from builders.build import STAGE_DIR, build_release
from builders.catalogs.compile import write_outputs
from builders.executor import RECORD_DIR
from mantis_data._io import FolderLock
from mantis_data.cutouts.local import LocalFitsSource
from mantis_data.release import MANIFEST_NAME, PARQUET_DIR, WEBDATASET_DIR, verify

REPO = Path(__file__).resolve().parent.parent
N_TARGETS = 36


@pytest.fixture(scope="module")
def small(demo_release, tmp_path_factory):
    """(targets.parquet of 36 demo targets, the demo cutout cache, a scratch folder)."""
    tmp = tmp_path_factory.mktemp("staging")
    targets = pd.read_parquet(demo_release / "work" / "targets.parquet").sort_values("target_id").iloc[:N_TARGETS]
    audit = pd.read_parquet(demo_release / "work" / "catalog_audit.parquet")
    audit = audit[audit["accepted"] & audit["target_id"].isin(targets["target_id"])]
    paths = write_outputs(targets.reset_index(drop=True), audit.reset_index(drop=True), tmp / "work")
    fewer = targets.iloc[: N_TARGETS - 8]  # the older release: other targets, other parameters
    write_outputs(fewer, audit[audit["target_id"].isin(fewer["target_id"])], tmp / "work_old")
    return paths["targets"], demo_release / "mock_inputs" / "cutouts", tmp


def _cmd(targets, cache, out, shard_mb) -> list[str]:
    return [sys.executable, "-m", "builders", "build", "--targets", str(targets), "--cutouts", str(cache),
            "--out", str(out), "--shard-mb", str(shard_mb), "--dust", "bh", "--workers", "1"]  # fmt: skip


def _build(targets, cache, out, shard_mb) -> dict:
    return build_release(targets, LocalFitsSource(cache), out, dust="bh", shard_mb=shard_mb, workers=1, progress=False, log=None)


def _ids_of(folder: Path) -> dict[str, list[str]] | str:
    """{split: ids} that load_dataset returns for a dataset folder, or the first line of its error."""
    from datasets import load_dataset

    try:
        ds = load_dataset(str(folder))
    except Exception as exc:  # what a user sees: it must be an error, not data
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    key = "__key__" if "__key__" in ds[next(iter(ds))].column_names else "target_id"
    return {split: list(ds[split][key]) for split in ds}


def _releases(root: Path) -> dict[str, list[str]]:
    """{split: ids} of a finished release, from its shard records."""
    out: dict[str, list[str]] = {}
    for rec in sorted((root / RECORD_DIR).glob("*.json")):
        data = json.loads(rec.read_text())
        out.setdefault(data["split"], []).extend(data["samples"])
    return out


def _check_one_release(out: Path, known: list[dict[str, list[str]]], seen: list) -> None:
    for folder in (WEBDATASET_DIR, PARQUET_DIR):
        got = _ids_of(out / folder)
        if isinstance(got, str):
            assert got, "a failed load must say why"
            seen.append(("error", folder))
            continue
        for split, ids in got.items():
            assert len(ids) == len(set(ids)), f"{folder} {split}: an id twice"
        as_sets = {s: sorted(v) for s, v in got.items()}
        matches = [i for i, rel in enumerate(known) if as_sets == {s: sorted(v) for s, v in rel.items()}]
        assert matches, f"{folder} holds a mix: {({s: len(v) for s, v in got.items()})}"
        seen.append((matches[0], folder))


def test_a_killed_build_never_shows_half_a_release(small, tmp_path):
    targets, cache, tmp = small
    out = tmp_path / "release"
    _build(tmp / "work_old" / "targets.parquet", cache, out, shard_mb=2)  # older: 8 targets fewer, 3 per shard
    old = _releases(out)
    pristine = tmp_path / "old_copy"
    shutil.copytree(out, pristine)
    new_ref = tmp_path / "reference"
    _build(targets, cache, new_ref, shard_mb=4)
    new = _releases(new_ref)
    assert sum(map(len, new.values())) > sum(map(len, old.values())) > 15
    known = [old, new]
    seen: list = []

    # killed by SIGKILL: before any shard is finished, after the first, half way
    n_shards = len(list((new_ref / RECORD_DIR).glob("*.json")))
    for after in (0, 1, n_shards // 2):
        proc = subprocess.Popen(_cmd(targets, cache, out, 4), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        records = out / STAGE_DIR / RECORD_DIR
        deadline = time.monotonic() + 120
        while (len(list(records.glob("*.json"))) if records.exists() else -1) < after and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _check_one_release(out, known, seen)
        assert json.loads((out / MANIFEST_NAME).read_text())["parameters"]["shard_mb"] == 2  # still the old one

    # killed inside the swap, between renames: simulated by the rename that never happens
    real_rename = os.rename
    for allowed in (5, 6, 7):  # 8 renames: audit, records, parquet, webdataset: each old aside, then new in
        shutil.rmtree(out)
        shutil.copytree(pristine, out)  # over the complete older release each time
        calls = {"n": 0}

        def rename(src, dst, _allowed=allowed, _calls=calls):
            if _calls["n"] == _allowed:
                raise KeyboardInterrupt("killed")
            _calls["n"] += 1
            real_rename(src, dst)

        build_mod.os.rename = rename
        try:
            with pytest.raises(KeyboardInterrupt):
                _build(targets, cache, out, shard_mb=4)
        finally:
            build_mod.os.rename = real_rename
        _check_one_release(out, known, seen)
    assert ("error", PARQUET_DIR) in seen and (1, PARQUET_DIR) in seen and (0, WEBDATASET_DIR) in seen

    # the rerun finishes the job: one complete new release
    m = _build(targets, cache, out, shard_mb=4)
    assert m["parameters"]["shard_mb"] == 4 and verify(out) == []
    assert not (out / STAGE_DIR).exists()
    seen.clear()
    _check_one_release(out, [new], seen)
    assert [s[0] for s in seen] == [0, 0]


def test_cards_list_every_file_and_num_examples(demo_release):
    import yaml

    for folder, suffix in ((WEBDATASET_DIR, ".tar"), (PARQUET_DIR, ".parquet")):
        text = (demo_release / folder / "README.md").read_text()
        card = yaml.safe_load(text.split("---\n")[1])
        manifest = json.loads((demo_release / MANIFEST_NAME).read_text())
        default = next(c for c in card["configs"] if c["config_name"] == "default")
        listed = sorted(p for entry in default["data_files"] for p in entry["path"])
        on_disk = sorted(f"data/{p.name}" for p in (demo_release / folder / "data").glob(f"*{suffix}"))
        assert listed == on_disk
        info = next(i for i in card["dataset_info"] if i["config_name"] == "default")
        assert {s["name"]: s["num_examples"] for s in info["splits"]} == {
            k: v for k, v in manifest["counts"].items() if v
        }


def test_a_second_build_or_fetch_exits_2_naming_the_holder(small, tmp_path):
    targets, cache, _ = small
    out = tmp_path / "locked"
    with FolderLock(out, "build"):
        run = subprocess.run(_cmd(targets, cache, out, 4), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    line = run.stderr.strip()
    assert "\n" not in line and f"pid {os.getpid()} on {socket.gethostname()}" in line and "started" in line
    assert not (out / MANIFEST_NAME).exists()

    fetch_cache = tmp_path / "cache"
    fetch = [sys.executable, "-m", "builders", "fetch", "--targets", str(targets), "--cache", str(fetch_cache),
             "--ps1-url", "http://127.0.0.1:9", "--legacy-url", "http://127.0.0.1:9", "--no-progress"]  # fmt: skip
    with FolderLock(fetch_cache, "fetch"):
        run = subprocess.run(fetch, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and f"pid {os.getpid()}" in run.stderr and "another fetch" in run.stderr
    assert not list(fetch_cache.rglob("*.fits"))


def test_two_concurrent_builds_the_second_exits_2(small, tmp_path):
    targets, cache, _ = small
    out = tmp_path / "race"
    first = subprocess.Popen(_cmd(targets, cache, out, 4), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / STAGE_DIR).exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        second = subprocess.run(_cmd(targets, cache, out, 2), cwd=REPO, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and f"pid {first.pid}" in second.stderr, second.stderr
    finally:
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    assert json.loads((out / MANIFEST_NAME).read_text())["parameters"]["shard_mb"] == 4 and verify(out) == []


def test_a_lock_left_by_a_dead_process_is_taken_over(small, tmp_path):
    targets, cache, _ = small
    out = tmp_path / "stale"
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"pid": 2**22 + 7, "host": socket.gethostname(), "started": "yesterday"}))
    m = _build(targets, cache, out, shard_mb=8)
    assert m["total"] > 20 and verify(out) == []


def test_datasets_refuses_a_missing_shard_or_a_wrong_count_and_ignores_an_extra_one(small, tmp_path):
    from datasets import load_dataset

    targets, cache, _ = small
    out = tmp_path / "cards"
    m = _build(targets, cache, out, shard_mb=2)
    folder = out / WEBDATASET_DIR
    tars = sorted((folder / "data").glob("train-*.tar"))
    extra = folder / "data" / "train-09999.tar"
    shutil.copyfile(tars[0], extra)  # an extra shard the card does not list: never read
    got = load_dataset(str(folder))
    assert {s: len(d) for s, d in got.items()} == {s: n for s, n in m["counts"].items() if n}
    extra.unlink()
    by_size = {}
    for t in tars:
        by_size.setdefault(len(json.loads((out / RECORD_DIR / f"{t.stem}.json").read_text())["samples"]), t)
    assert len(by_size) >= 2, "need two shards of different sample counts"
    (small_tar, _), (big_tar, _) = sorted(by_size.items())[0], sorted(by_size.items())[-1]
    small_path, big_path = by_size[small_tar], by_size[big_tar]
    shutil.copyfile(big_path, small_path)  # a shard replaced by one with more samples
    # (a fresh cache: 🤗 Datasets reuses what it prepared before without rereading the files)
    with pytest.raises(Exception, match="NonMatchingSplitsSizes|num_examples=") as info:
        load_dataset(str(folder), cache_dir=str(tmp_path / "hf"))
    assert type(info.value).__name__ == "NonMatchingSplitsSizesError"
    small_path.unlink()  # a missing shard
    with pytest.raises(FileNotFoundError, match=small_path.name):
        load_dataset(str(folder))
