"""Run shard tasks on a local process pool or a Dask cluster, resumably and with retries.

The unit of work is one output shard (:class:`builders.write.ShardTask`). A shard task is idempotent:
it first checks the shard's record ``<out>/.build/shards/<name>.json`` (written by the worker that ran
the shard) and returns it when the task's fingerprint matches and the files are in place with the
recorded size and sha256; otherwise it writes both files to temporary names, renames them, and writes
the record. So a rerun after any interruption (client killed, worker lost) rebuilds only what is not
finished, and a shard is never half-written.

Where the tasks run:

- ``scheduler=None``: a local process pool of ``workers`` processes (default: the usable CPUs, at most
  8). A task that raises, or whose process dies, is resubmitted up to ``retries`` times.
- ``scheduler="tcp://host:port"`` (or a ``dask.distributed.Client``): one ``client.submit`` per shard with
  ``retries`` (two per worker thread in flight); a lost worker's tasks are rescheduled by Dask. Dask is
  imported only on this path. The output folder must be on a filesystem every worker and the client see
  at the same path. The nodes need the installed package only, not the checkout: each task carries the
  builders code by value (builders.cluster), and before the first shard is submitted the client checks
  that the scheduler and every worker have its Python, package versions and ``mantis_data`` source.

A target whose reading or assembly raises (twice) is rejected with ``error: <ExceptionType>: <message>``
inside the task (builders.write.run_shard), so one bad target never fails its shard or the build; a
``MantisDataError`` (a problem the user must fix, e.g. a missing folder) fails the shard instead. Progress
(samples done, samples/s, ETA, shards done) is shown on the client.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mantis_data.cutouts.base import CutoutSource
from mantis_data.errors import MantisDataError
from mantis_data.release import PARQUET_DIR, WEBDATASET_DIR, changed_files

from .cluster import check_cluster, payload
from .io import atomic_path, atomic_write_json, sha256_file
from .write import ShardResult, ShardTask, run_shard

RECORD_DIR = ".build/shards"
"""Folder (under the release root) of the per-shard records."""

DEFAULT_RETRIES = 3
"""Times a failed shard task (exception or lost worker) is resubmitted before the build gives up on it."""


def record_path(out_root: Path, name: str) -> Path:
    """Path of the record of shard ``name`` under the release root."""
    return Path(out_root) / RECORD_DIR / f"{name}.json"


def check_done(
    out_root: str | Path, task: ShardTask, check_hashes: bool = True, check_inputs: bool = True
) -> tuple[ShardResult | None, str]:
    """(the recorded result, '') of a finished shard whose record, fingerprint, input files and outputs check
    out, else (None, why it must be built: 'new', 'targets changed', '2 cutout files changed', ...).

    ``check_hashes=False`` compares output file sizes only and ``check_inputs=False`` skips the input
    files (a cheap guess the client uses for progress); the task itself checks everything.
    """
    out_root = Path(out_root)
    path = record_path(out_root, task.name)
    if not path.exists():
        return None, "new"
    try:
        result = ShardResult(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None, "its build record is unreadable"
    if result.fingerprint != task.fingerprint():
        parts = task.parts()
        if not result.parts:
            return None, "built by an older builder"
        changed = [k for k in sorted(set(parts) | set(result.parts)) if parts.get(k) != result.parts.get(k)]
        return None, " and ".join(changed) + " changed"
    for rel, info in result.files.items():
        full = out_root / rel
        try:
            if full.stat().st_size != info["bytes"]:
                return None, f"{rel} changed on disk"
        except OSError:
            return None, f"{rel} is missing"
        if check_hashes and sha256_file(full) != info["sha256"]:
            return None, f"{rel} changed on disk"
    if check_inputs:
        changed = changed_files(result.inputs)
        if changed:
            return None, f"{len(changed)} cutout file{'s' if len(changed) != 1 else ''} changed"
    return result, ""


def load_done(
    out_root: str | Path, task: ShardTask, check_hashes: bool = True, check_inputs: bool = True
) -> ShardResult | None:
    """The recorded result of a finished shard, if its record, fingerprint, inputs and files all check out."""
    return check_done(out_root, task, check_hashes, check_inputs)[0]


def _reuse(done: ShardResult, src_root: Path, out_root: Path) -> None:
    """Hard-link (or copy) a finished shard's files from another release folder into ``out_root``: those its
    record lists and any other ``<name>.*`` file beside them (per-shard side files such as an index)."""
    import shutil

    rels = set(done.files)
    for folder in (Path(WEBDATASET_DIR) / "data", Path(PARQUET_DIR) / "data"):
        rels.update((folder / p.name).as_posix() for p in (src_root / folder).glob(f"{done.name}.*") if p.is_file())
    for rel in sorted(rels):
        dst = out_root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst) as tmp:
            tmp.unlink()
            try:
                os.link(src_root / rel, tmp)
            except OSError:
                shutil.copy2(src_root / rel, tmp)


def shard_task(task: ShardTask, source: CutoutSource, out_root: str | Path) -> tuple[ShardResult, bool]:
    """Run one shard unless it is already finished; return (result, skipped). Runs on a worker.

    A shard finished in ``out_root`` is kept; one finished, identical, in ``task.reuse_root`` (the
    release being replaced) is linked in; otherwise it is built and ``result.rebuilt_because`` says why.
    """
    out_root = Path(out_root)
    done, why = check_done(out_root, task)
    if done is not None:
        return replace(done, inputs={}), True
    if task.reuse_root is not None:
        live = Path(task.reuse_root)
        done, why = check_done(live, task)
        if done is not None:
            _reuse(done, live, out_root)
            done.rebuilt_because = None
            atomic_write_json(asdict(done), record_path(out_root, task.name))
            return replace(done, inputs={}), True
    result = run_shard(task, source, out_root)
    result.rebuilt_because = why
    atomic_write_json(asdict(result), record_path(out_root, task.name))
    return replace(result, inputs={}), False  # the input list stays in the record, not in the client's memory


def dask_shard_task(task: ShardTask, source: CutoutSource, out_root: str) -> tuple[dict, bool]:
    """shard_task on a Dask worker: the result as plain data (the client rebuilds the ShardResult)."""
    result, skipped = shard_task(task, source, out_root)
    return asdict(result), skipped


def default_workers() -> int:
    """Worker processes to use by default: the CPUs this process may run on (at most 8)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(8, n))


class SchedulerError(MantisDataError):
    """The Dask scheduler cannot be used: dask is not installed or the address does not answer."""


class ShardFailedError(MantisDataError):
    """One or more shard tasks failed after all their retries (rerun to retry them; finished shards are kept)."""


class _Progress:
    """Client-side progress: samples (targets) done, samples/s and ETA from tqdm, shards done as postfix."""

    def __init__(self, tasks: list[ShardTask], expected_done: set[str], enabled: bool, where: str):
        self.n_shards = len(tasks)
        self.expected_done = expected_done
        self.shards_done = len(expected_done)
        self.built = 0
        self.bar = tqdm(
            total=sum(len(t.targets) for t in tasks),
            initial=sum(len(t.targets) for t in tasks if t.name in expected_done),
            desc=f"build shards ({where})",
            unit="sample",
            disable=not enabled,
        )
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"shards {self.shards_done}/{self.n_shards}, built {self.built}", refresh=False)

    def done(self, task: ShardTask, skipped: bool) -> None:
        """Count one finished shard (already counted at start when it was expected to be skipped)."""
        if not skipped:
            self.built += 1
        if task.name in self.expected_done:
            return
        self.shards_done += 1
        self._postfix()
        self.bar.update(len(task.targets))

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


def _task_key(task: ShardTask, out_root: Path) -> str:
    """Dask key of a shard task: stable for one shard of one output folder, so a rerun joins a running task."""
    h = hashlib.sha256(f"{task.fingerprint()}\0{out_root.resolve()}".encode()).hexdigest()[:16]
    return f"mantis-shard-{task.name}-{h}"


Done = Callable[[ShardTask, ShardResult, bool], None]


def _run_inline(todo: list[ShardTask], source: CutoutSource, out_root: Path, retries: int, done: Done) -> dict[str, str]:
    errors: dict[str, str] = {}
    for task in todo:
        for attempt in range(retries + 1):
            try:
                result, skipped = shard_task(task, source, out_root)
            except Exception as exc:
                if attempt == retries:
                    errors[task.name] = f"{type(exc).__name__}: {exc}"
                continue
            done(task, result, skipped)
            break
    return errors


PARENT_CHECK_S = 0.5
"""How often (seconds) a pool worker checks that the build client that started it is still alive."""


def exit_with_parent(parent_pid: int) -> None:
    """Pool-worker initializer: a daemon thread ends the worker within PARENT_CHECK_S once its parent dies.

    A killed client (SIGKILL, OOM) cannot shut its pool down; without this its workers would finish
    their shard and then idle, holding their memory, until killed by hand. Polling the parent pid
    works with any start method (fork, spawn, forkserver), unlike PR_SET_PDEATHSIG, which follows
    the thread that forked the worker.
    """
    import threading
    import time

    first_ppid = os.getppid()  # the client (fork) or the forkserver, which itself ends with the client

    def gone() -> bool:
        if os.getppid() != first_ppid:
            return True  # re-parented: the process that started this worker has died
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False

    def watch() -> None:
        while True:
            if gone():
                os._exit(1)  # the client is gone: nothing will collect this worker's result
            time.sleep(PARENT_CHECK_S)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_pool(
    todo: list[ShardTask], source: CutoutSource, out_root: Path, workers: int, retries: int, done: Done
) -> dict[str, str]:
    """Process pool with at most 2 x ``workers`` tasks in flight; a dead process breaks the pool, which is rebuilt."""
    from concurrent.futures.process import BrokenProcessPool

    errors: dict[str, str] = {}
    failures: dict[str, int] = {}
    queue = list(todo)
    while queue:
        with ProcessPoolExecutor(
            max_workers=min(workers, len(queue)), initializer=exit_with_parent, initargs=(os.getpid(),)
        ) as pool:
            pending: dict[Future, ShardTask] = {}
            broken = False
            while queue or pending:
                while queue and len(pending) < 2 * workers and not broken:
                    try:
                        future = pool.submit(shard_task, queue[0], source, out_root)
                    except BrokenProcessPool:
                        broken = True
                        break
                    pending[future] = queue.pop(0)
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = pending.pop(future)
                    try:
                        result, skipped = future.result()
                    except Exception as exc:
                        broken = broken or isinstance(exc, BrokenProcessPool)
                        failures[task.name] = failures.get(task.name, 0) + 1
                        if failures[task.name] > retries:
                            errors[task.name] = f"{type(exc).__name__}: {exc}"
                        else:
                            queue.append(task)  # at the end: a crashing shard meets different neighbours next time
                        continue
                    done(task, result, skipped)
                if broken and not pending:
                    break  # leave the with-block: a fresh pool for what is left
    return errors


def _connect(scheduler: Any) -> tuple[Any, bool]:
    """(dask Client, whether we own it) for a scheduler address or an existing Client."""
    try:
        from dask.distributed import Client
    except ImportError as exc:
        raise SchedulerError(
            f"--scheduler needs dask.distributed ({exc}); install it with pip install -e '.[build]'"
        ) from exc
    if not isinstance(scheduler, str):
        return scheduler, False
    try:
        return Client(scheduler, set_as_default=False), True
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler} ({exc}); is it running?") from exc


def _run_dask(
    todo: list[ShardTask], source: CutoutSource, out_root: Path, client: Any, retries: int, done: Done
) -> dict[str, str]:
    """One ``client.submit`` per shard (a bounded window of them at a time); results as they complete."""
    from dask.distributed import as_completed

    from mantis_data.remote import run_payload

    errors: dict[str, str] = {}
    queue = list(todo)
    inflight: dict[str, tuple[Any, ShardTask]] = {}
    running = as_completed(loop=client.loop)

    def submit_more() -> None:
        # A bounded window (2 tasks per worker thread, at least 4) keeps the targets of a few thousand
        # shards (~200 KB each) out of the scheduler's memory; it widens as workers join.
        window = max(4, 2 * sum(client.nthreads().values()))
        while queue and running.count() < window:
            task = queue.pop(0)
            future = client.submit(
                run_payload,
                payload(dask_shard_task, task, source, str(out_root)),
                key=_task_key(task, out_root),
                pure=False,
                retries=retries,
            )
            inflight[future.key] = (future, task)
            running.add(future)

    try:
        submit_more()
        for future in running:
            task = inflight.pop(future.key)[1]
            if future.status != "finished":
                try:
                    exc = future.exception()
                except BaseException as cancelled:  # a cancelled future raises instead of returning its error
                    exc = cancelled
                errors[task.name] = f"{type(exc).__name__}: {exc}"
            else:
                record, skipped = future.result()
                done(task, ShardResult(**record), skipped)
            future.release()
            submit_more()
    finally:
        if inflight:  # an error or an interrupt on the client: do not leave our tasks queued on the cluster
            client.cancel([f for f, _ in inflight.values()])
    return errors


def describe_scheduler(scheduler: Any) -> str:
    """A short label for where shards run: 'dask tcp://...' or 'local'."""
    if scheduler is None:
        return "local"
    if isinstance(scheduler, str):
        return f"dask {scheduler}"
    return f"dask {getattr(getattr(scheduler, 'scheduler', None), 'address', 'client')}"


def _remove_temp_files(out_root: Path) -> None:
    """Delete temporary files left by tasks that died mid-write (their shards were rebuilt since)."""
    for folder in (Path(WEBDATASET_DIR) / "data", Path(PARQUET_DIR) / "data", Path(RECORD_DIR)):
        for path in (out_root / folder).glob(".*.tmp"):
            path.unlink(missing_ok=True)


def run_shards(
    tasks: list[ShardTask],
    source: CutoutSource,
    out_root: str | Path,
    workers: int | None = None,
    progress: bool = True,
    scheduler: Any = None,
    retries: int = DEFAULT_RETRIES,
) -> list[ShardResult]:
    """Run all shard tasks (finished ones are skipped) locally or on a Dask cluster; return results in task order.

    ``scheduler``: None for a local process pool of ``workers`` processes, or a Dask scheduler address
    (``tcp://host:port``) or ``dask.distributed.Client``. Raises ShardFailedError, after every other
    shard has finished, when some shard failed ``retries + 1`` times.
    """
    out_root = Path(out_root)
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError("shard task names must be unique")
    client, own = _connect(scheduler) if scheduler is not None else (None, False)
    if client is not None:
        try:  # before any shard is submitted (and before the progress bar): one clear error, not a failure per shard
            check_cluster(client, describe_scheduler(scheduler).removeprefix("dask "))
        except BaseException:
            if own:
                client.close()
            raise
    expected = {
        t.name
        for t in tasks
        if load_done(out_root, t, check_hashes=False, check_inputs=False) is not None
        or (t.reuse_root is not None and load_done(t.reuse_root, t, check_hashes=False, check_inputs=False) is not None)
    }
    bar = _Progress(tasks, expected, progress, describe_scheduler(scheduler))
    results: dict[str, ShardResult] = {}

    def done(task: ShardTask, result: ShardResult, skipped: bool) -> None:
        results[task.name] = result
        bar.done(task, skipped)

    try:
        if client is not None:
            errors = _run_dask(tasks, source, out_root, client, retries, done)
        else:
            workers = workers or default_workers()
            if workers == 1 or len(tasks) - len(expected) <= 1:
                errors = _run_inline(tasks, source, out_root, retries, done)
            else:
                errors = _run_pool(tasks, source, out_root, workers, retries, done)
    finally:
        bar.close()
        if own:
            client.close()
    if errors:
        listing = "; ".join(f"{name}: {why}" for name, why in sorted(errors.items()))
        raise ShardFailedError(
            f"{len(errors)} of {len(tasks)} shards failed after {retries + 1} attempts ({listing}); "
            "rerun the same command to retry them (finished shards are kept)"
        )
    _remove_temp_files(out_root)
    return [results[t.name] for t in tasks]
