"""Run shard tasks on a local process pool, resumably.

Each finished shard leaves a record ``<out>/.build/shards/<name>.json`` (its result). A rerun skips a
shard whose record matches the task's fingerprint and whose files are in place with the recorded
sha256; everything else is (re)built. Shard files are written atomically, so an interrupted build
leaves no half-written shard.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from .cutouts.base import CutoutSource
from .io import atomic_write_json, sha256_file
from .write import ShardResult, ShardTask, run_shard

RECORD_DIR = ".build/shards"


def _record_path(out_root: Path, task: ShardTask) -> Path:
    return out_root / RECORD_DIR / f"{task.name}.json"


def load_done(out_root: Path, task: ShardTask) -> ShardResult | None:
    """The recorded result of a finished shard, if its record, fingerprint and files all check out."""
    path = _record_path(out_root, task)
    if not path.exists():
        return None
    try:
        result = ShardResult(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if result.fingerprint != task.fingerprint():
        return None
    for rel, info in result.files.items():
        full = out_root / rel
        if not full.exists() or full.stat().st_size != info["bytes"] or sha256_file(full) != info["sha256"]:
            return None
    return result


def _run_and_record(task: ShardTask, source: CutoutSource, out_root: Path) -> ShardResult:
    result = run_shard(task, source, out_root)
    atomic_write_json(asdict(result), _record_path(out_root, task))
    return result


def default_workers() -> int:
    """Worker processes to use by default: the CPUs this process may run on (at most 8)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def run_shards(
    tasks: list[ShardTask],
    source: CutoutSource,
    out_root: str | Path,
    workers: int | None = None,
    progress: bool = True,
) -> list[ShardResult]:
    """Run all shard tasks (skipping finished ones); return results in task order."""
    out_root = Path(out_root)
    workers = workers or default_workers()
    results: dict[str, ShardResult] = {}
    todo: list[ShardTask] = []
    for task in tasks:
        done = load_done(out_root, task)
        if done is not None:
            results[task.name] = done
        else:
            todo.append(task)
    total = sum(len(t.targets) for t in tasks)
    bar = tqdm(
        total=total,
        initial=sum(len(t.targets) for t in tasks if t.name in results),
        desc="build shards",
        unit="target",
        disable=not progress,
    )
    try:
        if workers == 1 or len(todo) <= 1:
            for task in todo:
                results[task.name] = _run_and_record(task, source, out_root)
                bar.update(len(task.targets))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                pending = {pool.submit(_run_and_record, t, source, out_root): t for t in todo}
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        task = pending.pop(future)
                        results[task.name] = future.result()
                        bar.update(len(task.targets))
    finally:
        bar.close()
    return [results[t.name] for t in tasks]
