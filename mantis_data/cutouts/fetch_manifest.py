"""The fetch manifest of a cutout cache: its schema, reader (``read_manifest``, ``fetch_failures``) and writer.

``<cache>/fetch_manifest.jsonl``, append-only JSON lines, one line per target each time the target is
resolved (all its requested surveys ended)::

    {"target_id": "sdss-123", "ra": 150.1, "dec": 2.2, "galex": "ok", "ps1": "no_coverage",
     "unwise": "failed: http 503 after 5 attempts", "attempts": {"galex": 1, "ps1": 1, "unwise": 5},
     "fetched_at": "2025-01-01T00:00:00Z"}

A survey's status is 'ok', 'no_coverage' (Pan-STARRS lists no stack file there) or
'failed: <reason> after <n> attempt(s)' (Pan-STARRS: '[<bands>]' names the bands that failed). The last
line of a target wins. Each line is one ``write`` to an O_APPEND file (the kernel has it the moment it
returns, so a SIGKILL loses nothing; fsync every second and at the end bounds what a power cut loses).
The manifest stays JSONL (no compaction): ``read_manifest`` loads it with pyarrow's JSON reader.
``mantis_data.cutouts.fetch`` writes it and reads it back to resume.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from mantis_data.bands import SURVEY_ORDER
from mantis_data.errors import InputDataError

MANIFEST_NAME = "fetch_manifest.jsonl"
"""The fetch manifest's file name inside the cache folder."""

DONE_STATUSES = ("ok", "no_coverage")
"""Survey statuses a rerun does not fetch again."""

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
