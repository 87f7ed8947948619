"""Fetch every target's cutouts from the services into a cutout cache, resumably: ``python -m builders fetch``.

The cache is the layout of ``mantis_data.cutouts.layout`` (what ``LocalFitsSource`` and the build read):
each validated response is written as it arrives, atomically (a temporary file in ``<cache>/.tmp``,
then a rename), so the cache never holds a partial or unvalidated file.

Fetch manifest: ``<cache>/fetch_manifest.jsonl``, append-only JSON lines, one line per target each time
the target is resolved (all its requested surveys ended)::

    {"target_id": "sdss-123", "ra": 150.1, "dec": 2.2, "galex": "ok", "ps1": "no_coverage",
     "unwise": "failed: http 503 after 5 attempts", "attempts": {"galex": 1, "ps1": 1, "unwise": 5},
     "fetched_at": "2025-01-01T00:00:00Z"}

A survey's status is 'ok', 'no_coverage' (Pan-STARRS lists no stack file there) or
'failed: <reason> after <n> attempt(s)' (Pan-STARRS: '[<bands>]' names the bands that failed). The last
line of a target wins. Each line is one ``write`` to an O_APPEND file (the kernel has it the moment it
returns, so a SIGKILL loses nothing; fsync every second and at the end bounds what a power cut loses).
A rerun reads it, skips targets whose surveys are all ok/no_coverage, and retries what failed. Targets
with no line yet (never started, or in flight when the process died) first look at the cache: files
already there are validated like a response and kept, so a completed stamp is never fetched twice.
The manifest stays JSONL (no compaction): ``read_manifest`` loads it with pyarrow's JSON reader.
"""

from __future__ import annotations

import json
import os
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
from mantis_data.bands import SURVEY_ORDER, SURVEYS
from mantis_data.errors import InputDataError, MantisDataError

from .base import Stamps
from .client import (
    HostLimits,
    HttpClient,
    Interrupted,
    InvalidResponse,
    RequestFailed,
    RetryPolicy,
)
from .layout import cutout_path
from .legacysurvey import (
    DEFAULT_LEGACY_URL,
    LEGACY_SURVEYS,
    LegacySurveyClient,
    LegacySurveySource,
)
from .ps1 import DEFAULT_PS1_URL, PS1_BANDS, PS1Client, PS1Source

MANIFEST_NAME = "fetch_manifest.jsonl"
"""The fetch manifest's file name inside the cache folder."""

TMP_DIR = ".tmp"
"""Folder inside the cache for files being written (emptied at the start of each fetch)."""

DONE_STATUSES = ("ok", "no_coverage")
"""Survey statuses a rerun does not fetch again."""

_POSITION_TOLERANCE_DEG = 1e-6  # a target whose recorded position moved more than this is refetched
_FSYNC_EVERY_S = 1.0

_MANIFEST_SCHEMA = pa.schema(
    [
        ("target_id", pa.string()),
        ("ra", pa.float64()),
        ("dec", pa.float64()),
        *[(s, pa.string()) for s in SURVEY_ORDER],
        ("attempts", pa.struct([(s, pa.int64()) for s in SURVEY_ORDER])),
        ("fetched_at", pa.string()),
    ]
)


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass
class FetchConfig:
    """How to fetch: service URLs, per-host politeness, timeouts and retries, which surveys.

    concurrency: requests in flight per host; rate: requests per second per host (None: unlimited);
    timeout_s: socket timeout per connect/read; attempts: tries per request; backoff_s: first retry wait
    (doubling, capped at backoff_max_s, jittered by +-50%); max_offset_px: largest WCS centre offset kept;
    workers: fetch threads (default 2 x concurrency); recheck: revalidate files of targets already ok.
    """

    ps1_url: str = DEFAULT_PS1_URL
    legacy_url: str = DEFAULT_LEGACY_URL
    concurrency: int = 4
    rate: float | None = 5.0
    burst: int = 1
    timeout_s: float = 30.0
    attempts: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 600.0
    max_offset_px: float = 1.0
    surveys: tuple[str, ...] = SURVEY_ORDER
    workers: int | None = None
    recheck: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        self.surveys = tuple(self.surveys)
        bad = [s for s in self.surveys if s not in SURVEYS]
        if bad or not self.surveys:
            raise InputDataError(f"surveys must be a non-empty subset of {SURVEY_ORDER}, not {self.surveys}")
        if self.workers is not None and self.workers < 1:
            raise InputDataError(f"workers must be >= 1, not {self.workers}")
        if not self.max_offset_px > 0:
            raise InputDataError(f"max_offset_px must be > 0, not {self.max_offset_px}")

    def make_client(self) -> HttpClient:
        """An HttpClient with this configuration's limits, retries and timeout."""
        return HttpClient(
            HostLimits(concurrency=self.concurrency, rate=self.rate, burst=self.burst),
            RetryPolicy(
                attempts=self.attempts,
                backoff_s=self.backoff_s,
                backoff_max_s=self.backoff_max_s,
                max_retry_after_s=self.max_retry_after_s,
            ),
            timeout_s=self.timeout_s,
            seed=self.seed,
        )


# ---------------------------------------------------------------------------------------------
# Manifest


def manifest_path(cache: str | Path) -> Path:
    """Path of the fetch manifest in a cache folder."""
    return Path(cache) / MANIFEST_NAME


def _type_problem(rec: dict) -> str | None:
    """What is wrong with the types of one manifest record (None when they fit _MANIFEST_SCHEMA)."""

    def number(v) -> bool:
        return v is None or (isinstance(v, int | float) and not isinstance(v, bool))

    for key in ("ra", "dec"):
        if not number(rec.get(key)):
            return f"{key} is {rec.get(key)!r}, not a number"
    for key in (*SURVEY_ORDER, "fetched_at"):
        if rec.get(key) is not None and not isinstance(rec.get(key), str):
            return f"{key} is {rec.get(key)!r}, not a string"
    attempts = rec.get("attempts")
    if attempts is not None:
        if not isinstance(attempts, dict):
            return f"attempts is {attempts!r}, not an object"
        for s in SURVEY_ORDER:
            v = attempts.get(s)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                return f"attempts.{s} is {v!r}, not an integer"
    return None


def _read_records(data: bytes, path: Path | str = MANIFEST_NAME) -> pa.Table:
    import io

    import pyarrow.json as pj

    try:
        return pj.read_json(
            io.BytesIO(data),
            parse_options=pj.ParseOptions(explicit_schema=_MANIFEST_SCHEMA, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        rows = []
        for number, line in enumerate(data.splitlines(), start=1):
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a damaged line (power cut mid-write) is skipped, not fatal
            if not (isinstance(rec, dict) and isinstance(rec.get("target_id"), str)):
                continue
            why = _type_problem(rec)
            if why is not None:
                raise InputDataError(
                    f"{path}:{number}: {why} (target {rec['target_id']!r}); delete that line (its target is "
                    "fetched again) and rerun"
                ) from None
            rows.append({k: rec.get(k) for k in _MANIFEST_SCHEMA.names})
        return pa.Table.from_pylist(rows, schema=_MANIFEST_SCHEMA)


def read_manifest(cache: str | Path) -> pd.DataFrame:
    """The latest manifest record per target: target_id, ra, dec, galex, ps1, unwise, attempts_<survey>, fetched_at."""
    path = manifest_path(cache)
    columns = ["target_id", "ra", "dec", *SURVEY_ORDER, *[f"attempts_{s}" for s in SURVEY_ORDER], "fetched_at"]
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputDataError(f"cannot read the fetch manifest {path}: {exc.strerror or exc}") from None
    data = data[: data.rfind(b"\n") + 1]
    table = _read_records(data, path) if data.strip() else pa.Table.from_pylist([], schema=_MANIFEST_SCHEMA)
    frame = pd.DataFrame({n: table.column(n).to_pandas() for n in ("target_id", "ra", "dec", *SURVEY_ORDER, "fetched_at")})
    attempts = table.column("attempts").combine_chunks() if table.num_rows else None
    for s in SURVEY_ORDER:
        frame[f"attempts_{s}"] = (
            attempts.field(s).to_pandas() if attempts is not None else pd.Series(dtype="float64")
        )
    frame = frame[frame["target_id"].notna()]
    return frame.drop_duplicates("target_id", keep="last").reset_index(drop=True)[columns]


def fetch_failures(cache: str | Path) -> dict[str, dict[str, str]]:
    """Per target, the surveys whose latest fetch status is not 'ok' (no_coverage or failed: ...)."""
    frame = read_manifest(cache)
    out: dict[str, dict[str, str]] = {}
    for s in SURVEY_ORDER:
        col = frame[s]
        bad = col.notna() & (col != "ok")
        for tid, status in zip(frame.loc[bad, "target_id"], col[bad], strict=True):
            out.setdefault(tid, {})[s] = status
    return out


class ManifestWriter:
    """Appends manifest lines with one O_APPEND write each; fsyncs at most every second and on close."""

    def __init__(self, cache: str | Path):
        self.path = manifest_path(cache)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            size = os.fstat(self._fd).st_size
            if size:
                with open(self.path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":  # a torn last line (power cut): end it so ours starts clean
                        os.write(self._fd, b"\n")
        except OSError as exc:
            raise InputDataError(f"cannot write the fetch manifest {self.path}: {exc.strerror or exc}") from None
        self._last_sync = time.monotonic()
        self.records = 0

    def append(self, record: dict) -> None:
        """Write one record as a JSON line."""
        os.write(self._fd, (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode())
        self.records += 1
        now = time.monotonic()
        if now - self._last_sync >= _FSYNC_EVERY_S:
            os.fsync(self._fd)
            self._last_sync = now

    def close(self) -> None:
        """Flush to disk and close."""
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


# ---------------------------------------------------------------------------------------------
# A combined HTTP source


class HttpSource:
    """Cutout source over HTTP for all three surveys, validated in memory (no cache): for small jobs.

    For a release, fetch into a cache first (``fetch_cutouts``) and build from it with LocalFitsSource:
    the rate limits of an HttpSource copied into worker processes are per process.
    """

    def __init__(self, config: FetchConfig | None = None):
        self.config = config or FetchConfig()
        self._init()

    def _init(self) -> None:
        client = self.config.make_client()
        self._ps1 = PS1Source(client, self.config.ps1_url, self.config.max_offset_px)
        self._legacy = LegacySurveySource(client, self.config.legacy_url, self.config.max_offset_px)

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.config = state["config"]
        self._init()

    def get(self, target_id: str, ra: float, dec: float) -> Stamps:
        """The three stamps of one target at (ra, dec) degrees ICRS, or failures per survey."""
        stamps = Stamps(target_id=target_id)
        try:
            self._legacy.fill(stamps, ra, dec)
            self._ps1.fill(stamps, ra, dec)
        except Interrupted:
            raise MantisDataError("interrupted") from None
        return stamps


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
