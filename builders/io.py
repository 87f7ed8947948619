"""Atomic file writes and checksums shared by the builders."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mantis_data.release import sha256_file

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_parquet", "sha256_file"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write bytes to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(obj, path: str | Path) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    atomic_write_bytes((json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode(), path)


def atomic_write_parquet(frame: pd.DataFrame | pa.Table, path: str | Path) -> None:
    """Write a DataFrame or Arrow table as Parquet atomically."""
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


