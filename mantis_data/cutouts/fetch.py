"""Fetch every target's cutouts from the services into a cutout cache, resumably: ``python -m builders fetch``.

The cache is the layout of ``mantis_data.cutouts.layout`` (what ``LocalFitsSource`` and the build read):
each validated response is written as it arrives, atomically (a temporary file in ``<cache>/.tmp``,
then a rename), so the cache never holds a partial or unvalidated file.

Each resolved target gets a line in the fetch manifest, ``<cache>/fetch_manifest.jsonl`` (its format,
reader and writer live in ``mantis_data.cutouts.fetch_manifest``; the last line of a target wins).
A rerun reads it, skips targets whose surveys are all ok/no_coverage, and retries what failed. Targets
with no line yet (never started, or in flight when the process died) first look at the cache: files
already there are validated like a response and kept, so a completed stamp is never fetched twice.

``FetchConfig`` now lives in ``mantis_data.cutouts.fetch_config`` and ``HttpSource`` in
``mantis_data.cutouts.http_source``; this module still imports (re-exports) them and every manifest name.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mantis_data._io import FolderLock, atomic_write_bytes
from mantis_data.bands import SURVEY_ORDER
from mantis_data.errors import InputDataError

from .client import HttpClient, InvalidResponse, RequestFailed
from .fetch_config import FetchConfig
from .fetch_manifest import (  # noqa: F401  (re-exported: the manifest used to live here)
    _FSYNC_EVERY_S,
    _MANIFEST_SCHEMA,
    DONE_STATUSES,
    MANIFEST_NAME,
    ManifestWriter,
    _read_records,
    _type_problem,
    fetch_failures,
    manifest_path,
    read_manifest,
)
from .http_source import HttpSource
from .layout import cutout_path
from .legacysurvey import LEGACY_SURVEYS, LegacySurveyClient
from .ps1 import PS1_BANDS, PS1Client

TMP_DIR = ".tmp"
"""Folder inside the cache for files being written (emptied at the start of each fetch)."""

_POSITION_TOLERANCE_DEG = 1e-6  # a target whose recorded position moved more than this is refetched


# ---------------------------------------------------------------------------------------------
# Targets


def _check_target_id(tid: str) -> None:
    if not tid or "/" in tid or "\\" in tid or tid.startswith(".") or "\0" in tid:
        raise InputDataError(f"target_id {tid!r} cannot name a cache file; recompile the targets")


def read_targets(targets) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(target ids, ra, dec degrees) from a targets.parquet path, a pandas DataFrame or an Arrow table."""
    if isinstance(targets, str | Path):
        path = Path(targets)
        if not path.exists():
            raise InputDataError(f"{path} does not exist; run `python -m builders catalogs` first")
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(path, columns=["target_id", "ra", "dec"])
        except (pa.ArrowInvalid, KeyError, OSError) as exc:
            raise InputDataError(f"{path}: cannot read target_id, ra, dec ({exc})") from None
        targets = table
    if isinstance(targets, pa.Table):
        missing = [c for c in ("target_id", "ra", "dec") if c not in targets.column_names]
        if missing:
            raise InputDataError(f"targets lack column(s) {missing}; they need target_id, ra, dec")
        ids = [str(t) for t in targets.column("target_id").to_pylist()]
        ra = np.asarray(targets.column("ra").to_numpy(), dtype=np.float64)
        dec = np.asarray(targets.column("dec").to_numpy(), dtype=np.float64)
    else:
        missing = [c for c in ("target_id", "ra", "dec") if c not in targets.columns]
        if missing:
            raise InputDataError(f"targets lack column(s) {missing}; they need target_id, ra, dec")
        ids = [str(t) for t in targets["target_id"].tolist()]
        ra = np.asarray(targets["ra"], dtype=np.float64)
        dec = np.asarray(targets["dec"], dtype=np.float64)
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputDataError(f"target {ids[i]!r} has no valid position (ra={ra[i]}, dec={dec[i]}); fix the targets")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(t for t in ids if t in seen or seen.add(t))
        raise InputDataError(f"target_id {dup!r} appears twice in the targets; recompile the catalogs")
    for tid in ids:
        _check_target_id(tid)
    return ids, ra, dec


# ---------------------------------------------------------------------------------------------
# Fetching


@dataclass
class _Outcome:
    index: int
    statuses: dict[str, tuple[str, int]] = field(default_factory=dict)


class _Cache:
    """Atomic writes into the layout, and validation of files already there."""

    def __init__(self, root: Path, ps1: PS1Client, legacy: LegacySurveyClient):
        self.root = root
        self.tmp = root / TMP_DIR
        self.ps1 = ps1
        self.legacy = legacy
        self._made: set[Path] = set()
        self._lock = threading.Lock()
        self.files_written = 0
        self.files_kept = 0

    def write(self, path: Path, data: bytes) -> None:
        parent = path.parent
        if parent not in self._made:
            parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                self._made.add(parent)
        try:
            atomic_write_bytes(data, path, tmp_dir=self.tmp)
        except OSError as exc:
            raise InputDataError(f"cannot write {path}: {exc.strerror or exc}; check the cache folder and disk space") from None
        with self._lock:
            self.files_written += 1

    def valid_existing(self, path: Path, check: Callable[[bytes], object]) -> bool:
        """Whether ``path`` exists and passes ``check`` (a response validator); an invalid file is removed."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return False
        try:
            check(data)
        except InvalidResponse:
            path.unlink(missing_ok=True)
            return False
        with self._lock:
            self.files_kept += 1
        return True


def _fetch_ps1(cache: _Cache, tid: str, ra: float, dec: float, force: bool) -> tuple[str, int]:
    paths = {b: cutout_path(cache.root, "ps1", tid, b) for b in PS1_BANDS}
    if force:
        for p in paths.values():
            p.unlink(missing_ok=True)
    missing = tuple(
        b for b in PS1_BANDS if not cache.valid_existing(paths[b], lambda data: cache.ps1.validate(data, ra, dec))
    )
    if not missing:
        return "ok", 0
    result = cache.ps1.fetch(ra, dec, missing, on_band=lambda b, raw: cache.write(paths[b], raw))
    return result.status, result.attempts


def _fetch_legacy(cache: _Cache, tid: str, ra: float, dec: float, surveys: tuple[str, ...], force: bool) -> dict[str, tuple[str, int]]:
    out = {}
    for s in surveys:
        path = cutout_path(cache.root, s, tid)
        if force:
            path.unlink(missing_ok=True)
        elif cache.valid_existing(path, lambda data, s=s: cache.legacy.validate(data, s, ra, dec)):
            out[s] = ("ok", 0)
            continue
        try:
            raw, _, attempts = cache.legacy.cube(s, ra, dec)
        except RequestFailed as exc:
            out[s] = (exc.status, exc.attempts)
            continue
        cache.write(path, raw)
        out[s] = ("ok", attempts)
    return out


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kind(status) -> str:
    if status is None or (isinstance(status, float) and np.isnan(status)):
        return "not_fetched"
    return "failed" if str(status).startswith("failed") else str(status)


def fetch_cutouts(
    targets,
    cache: str | Path,
    config: FetchConfig | None = None,
    *,
    progress: bool = True,
    client: HttpClient | None = None,
) -> dict:
    """Fetch the cutouts of ``targets`` (targets.parquet path, DataFrame or Arrow table) into ``cache``.

    Resumable (see the module docstring). Returns a summary: n_targets, already_done, processed,
    status counts per survey over all targets ('ok', 'no_coverage', 'failed', 'not_fetched'),
    targets_ok, requests, retries, counters (client outcome tallies), files_written, files_kept,
    seconds and cpu_seconds.
    """
    root = Path(cache)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputDataError(f"cannot use {root} as the cutout cache: {exc.strerror or exc}") from None
    with FolderLock(root, "fetch"):  # a second fetch into the same cache exits 2 naming this one
        return _fetch_locked(targets, cache, config, progress=progress, client=client)


def _fetch_locked(
    targets,
    cache: str | Path,
    config: FetchConfig | None = None,
    *,
    progress: bool = True,
    client: HttpClient | None = None,
) -> dict:
    """fetch_cutouts, with the cache folder's lock held."""
    from tqdm.auto import tqdm

    cfg = config or FetchConfig()
    t0, c0 = time.perf_counter(), time.process_time()
    own_client = client is None
    client = client or cfg.make_client()
    ps1c = PS1Client(client, cfg.ps1_url, cfg.max_offset_px)  # checks the URLs before anything is touched
    lsc = LegacySurveyClient(client, cfg.legacy_url, cfg.max_offset_px)
    ids, ra, dec = read_targets(targets)
    root = Path(cache)
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(root / TMP_DIR, ignore_errors=True)
        (root / TMP_DIR).mkdir()
    except OSError as exc:
        raise InputDataError(f"cannot use {root} as the cutout cache: {exc.strerror or exc}") from None

    n = len(ids)
    status: dict[str, np.ndarray] = {s: np.full(n, None, dtype=object) for s in SURVEY_ORDER}
    force = np.zeros(n, dtype=bool)
    prior = read_manifest(root)
    if len(prior):
        pos = pd.Series(np.arange(n), index=pd.Index(ids))
        prior = prior[prior["target_id"].isin(pos.index)]
        idx = pos.loc[prior["target_id"]].to_numpy()
        moved = (np.abs(prior["ra"].to_numpy(float) - ra[idx]) > _POSITION_TOLERANCE_DEG) | (
            np.abs(prior["dec"].to_numpy(float) - dec[idx]) > _POSITION_TOLERANCE_DEG
        )
        force[idx[moved]] = True
        interned: dict[str, str] = {}
        for s in SURVEY_ORDER:
            vals = np.array(
                [interned.setdefault(v, v) if isinstance(v, str) else None for v in prior[s].to_numpy(dtype=object)],
                dtype=object,
            )
            status[s][idx[~moved]] = vals[~moved]
    wanted = cfg.surveys
    todo_mask = np.zeros(n, dtype=bool)
    for s in wanted:
        done = np.isin(status[s].astype(str), DONE_STATUSES) & ~force
        if cfg.recheck:
            done &= False
        todo_mask |= ~done
    todo = np.flatnonzero(todo_mask)

    store = _Cache(root, ps1c, lsc)
    workers = cfg.workers or 2 * cfg.concurrency

    def jobs(i: int) -> list[tuple[str, tuple[str, ...]]]:
        """The requests to make for target i: ('ps1', ('ps1',)) and/or ('legacy', (surveys...))."""
        need = [s for s in wanted if cfg.recheck or force[i] or status[s][i] not in DONE_STATUSES]
        out: list[tuple[str, tuple[str, ...]]] = [("ps1", ("ps1",))] if "ps1" in need else []
        legacy = tuple(s for s in need if s in LEGACY_SURVEYS)
        if legacy:
            out.append(("legacy", legacy))
        return out

    def run(i: int, service: str, surveys: tuple[str, ...]) -> _Outcome:
        tid, r, d = ids[i], float(ra[i]), float(dec[i])
        if service == "ps1":
            return _Outcome(i, {"ps1": _fetch_ps1(store, tid, r, d, bool(force[i]))})
        return _Outcome(i, _fetch_legacy(store, tid, r, d, surveys, bool(force[i])))

    remaining: dict[int, int] = {}  # targets in flight -> jobs not finished
    attempts: dict[int, dict[str, int]] = {}
    tally: Counter[str] = Counter()
    window = max(4 * workers, 16)

    bar = tqdm(total=len(todo), disable=not progress or not len(todo), desc="fetch", unit="target", dynamic_ncols=True)
    if progress and n - len(todo):
        bar.write(f"fetch: {n - len(todo)} of {n} targets already done in {root}")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
    inflight: set[Future] = set()
    target_iter = iter(todo)
    try:
        with ManifestWriter(root) as manifest:

            def fill() -> None:
                for i in target_iter:
                    i = int(i)
                    todo_jobs = jobs(i)
                    remaining[i] = len(todo_jobs)
                    for service, surveys in todo_jobs:
                        inflight.add(pool.submit(run, i, service, surveys))
                    if len(inflight) >= window:
                        return

            fill()
            while inflight:
                done, _ = wait(inflight, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    inflight.discard(fut)
                    out = fut.result()
                    i = out.index
                    for s, (st, n_att) in out.statuses.items():
                        status[s][i] = st
                        attempts.setdefault(i, {})[s] = n_att
                    remaining[i] -= 1
                    if remaining[i] == 0:
                        del remaining[i]
                        rec_att = attempts.pop(i, {})
                        manifest.append(
                            {
                                "target_id": ids[i],
                                "ra": float(ra[i]),
                                "dec": float(dec[i]),
                                **{s: status[s][i] for s in SURVEY_ORDER},
                                "attempts": {s: int(rec_att.get(s, 0)) for s in SURVEY_ORDER},
                                "fetched_at": _now(),
                            }
                        )
                        kinds = {_kind(status[s][i]) for s in wanted}
                        tally["failed" if "failed" in kinds else "no_coverage" if "no_coverage" in kinds else "ok"] += 1
                        bar.set_postfix(ok=tally["ok"], no_cov=tally["no_coverage"], failed=tally["failed"], refresh=False)
                        bar.update(1)
                fill()
    except BaseException:
        client.stop()
        for fut in inflight:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        bar.close()
        if own_client:
            client.close()
        shutil.rmtree(root / TMP_DIR, ignore_errors=True)
    pool.shutdown(wait=True)

    counts = {s: dict(Counter(_kind(v) for v in status[s])) for s in wanted}
    targets_ok = int(np.all([[_kind(v) == "ok" for v in status[s]] for s in wanted], axis=0).sum()) if n else 0
    return {
        "n_targets": n,
        "already_done": int(n - len(todo)),
        "processed": int(len(todo)),
        "counts": counts,
        "targets_ok": targets_ok,
        "requests": int(client.counters["requests"]),
        "retries": int(client.counters["retries"]),
        "counters": dict(client.counters),
        "files_written": store.files_written,
        "files_kept": store.files_kept,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "cache": str(root),
    }


def format_summary(summary: dict) -> str:
    """A few lines describing a fetch summary for the terminal."""
    lines = [
        f"fetched {summary['processed']} targets ({summary['already_done']} already done) of {summary['n_targets']} "
        f"into {summary['cache']} in {summary['seconds']:.1f} s: {summary['requests']} requests, "
        f"{summary['retries']} retries, {summary['files_written']} files written"
    ]
    for s, c in summary["counts"].items():
        lines.append(f"  {s:<7} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    failed = sum(c.get("failed", 0) for c in summary["counts"].values())
    if failed:
        lines.append(f"  {failed} survey fetches failed (reasons in {MANIFEST_NAME}); rerun the same command to retry them")
    return "\n".join(lines)


__all__ = [
    "DONE_STATUSES",
    "MANIFEST_NAME",
    "FetchConfig",
    "HttpSource",
    "ManifestWriter",
    "fetch_cutouts",
    "fetch_failures",
    "format_summary",
    "manifest_path",
    "read_manifest",
    "read_targets",
]
