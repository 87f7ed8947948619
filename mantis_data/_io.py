"""The one atomic-write helper of the project: temp file beside the target, fsync, os.replace.

Every file the package, the builders and the training code write goes through here, so a reader never
sees half a file and a killed writer leaves at most a hidden ``.<name>.<random>.tmp`` beside the target
(removable with :func:`remove_temp_files`). The temp file is created with mode ``0o666`` and the process
umask applies, exactly as for a file the user creates with ``open(path, "w")`` (``-rw-r--r--`` under
umask 022): not the ``0600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputDataError

TEMP_SUFFIX = ".tmp"
"""Suffix of the temporary files (``.<name>.<hex>.tmp``) this module creates."""

__all__ = [
    "TEMP_SUFFIX",
    "FolderLock",
    "LockedError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "atomic_write_text",
    "remove_temp_files",
]


def _create_temp(path: Path, tmp_dir: Path | None) -> Path:
    folder = path.parent if tmp_dir is None else Path(tmp_dir)
    for _ in range(100):
        tmp = folder / f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for any new file
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open a directory; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True, tmp_dir: str | Path | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (or in ``tmp_dir``, same filesystem); on success it replaces ``path``.

    The caller writes the temporary file by name (any library that opens a path works). On success the
    file is fsynced, renamed over ``path`` with ``os.replace`` and the folder fsynced; on any exception
    the temporary file is removed and ``path`` is left as it was. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path, None if tmp_dir is None else Path(tmp_dir))
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)


def atomic_write_bytes(data: bytes, path: str | Path, *, fsync: bool = True, tmp_dir: str | Path | None = None) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, fsync=fsync, tmp_dir=tmp_dir) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(text: str, path: str | Path, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write_bytes(text.encode(encoding), path)


def atomic_write_json(obj, path: str | Path) -> None:
    """Write ``obj`` as indented, key-sorted JSON (no NaN) atomically."""
    atomic_write_bytes((json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode(), path)


def atomic_write_parquet(frame, path: str | Path, **options) -> None:
    """Write a pandas DataFrame or Arrow table as Parquet (zstd unless ``options`` say otherwise) atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    options.setdefault("compression", "zstd")
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **options)


def remove_temp_files(folder: str | Path) -> int:
    """Delete the temporary files a killed writer left in ``folder`` (not recursive); return how many."""
    n = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for p in folder.glob(f".*{TEMP_SUFFIX}"):
        p.unlink(missing_ok=True)
        n += 1
    return n


class LockedError(InputDataError):
    """Another run holds the folder's lock (the message names it: pid, host, start time)."""


class FolderLock:
    """An exclusive lock on a folder for one run (a build's output folder, a fetch cache): ``<folder>/.lock``.

    Held with ``fcntl.flock`` on the lock file, so the operating system releases it when the holder dies
    (a lock left by a dead process is simply taken over); the file names the holder (pid, host, start
    time, command) so a second run can say who holds it. Use as a context manager; a second run raises
    ``LockedError`` (an InputDataError: CLIs exit 2) naming the holder.
    """

    NAME = ".lock"

    def __init__(self, folder: str | Path, what: str = "run"):
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self.what = what
        self._fd: int | None = None

    def holder(self) -> dict:
        """The holder recorded in the lock file ({} when unreadable)."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> FolderLock:
        """Take the lock or raise LockedError naming the holder."""
        import fcntl
        import socket
        import sys
        import time

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            h = self.holder()
            who = (
                f"pid {h.get('pid', '?')} on {h.get('host', '?')}, started {h.get('started', '?')}"
                + (f" ({h['command']})" if h.get("command") else "")
            )
            raise LockedError(
                f"{self.folder} is in use by another {self.what}: {who}; wait for it to finish "
                f"(or stop it), then rerun"
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv)[:300],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (the file stays, naming the last holder; it is harmless)."""
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
