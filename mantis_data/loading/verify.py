"""``verify="sha256"``: hash every shard of a split once, in a background thread, cached by size and mtime.

The hashes are kept in a small JSON cache (``$MANTIS_DATA_CACHE/sha256.json``, default
``~/.cache/mantis_data``) keyed by path, size and mtime, so a shard is hashed again only when it changes.
``MantisLoader`` asks ``check()`` after every batch (a mismatch raises ``ReleaseError`` naming the shard)
and waits for the hashing at the end of its first epoch, so no epoch completes on a damaged shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

from ..errors import ReleaseError
from .shards import ShardFile

_LOCK = threading.Lock()
_MEMO: dict[tuple[str, int, int], str] = {}


def cache_path() -> Path:
    """The sha256 cache file (``$MANTIS_DATA_CACHE/sha256.json``, default ``~/.cache/mantis_data/sha256.json``)."""
    root = os.environ.get("MANTIS_DATA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mantis_data")
    return Path(root) / "sha256.json"


def _load_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, entries: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sha256-")
        with os.fdopen(fd, "w") as fh:
            json.dump(entries, fh)
        os.replace(tmp, path)
    except OSError:  # a read-only home only costs a rehash next time
        pass


def file_sha256(path: str, block: int = 1 << 22, cache: Path | None = None) -> str:
    """Hex sha256 of a local file, remembered (in this process and in the cache file) by path, size and mtime."""
    cache = cache or cache_path()
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key in _MEMO:
            return _MEMO[key]
        cached = _load_cache(cache).get(key[0])
    if cached and cached.get("bytes") == st.st_size and cached.get("mtime_ns") == st.st_mtime_ns:
        digest = cached["sha256"]
    else:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(block):
                h.update(chunk)
        digest = h.hexdigest()
        with _LOCK:
            entries = _load_cache(cache)
            entries[key[0]] = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
            _save_cache(cache, entries)
    with _LOCK:
        _MEMO[key] = digest
    return digest


class ShardVerifier:
    """Hashes the given files in a daemon thread and compares them with their MANIFEST sha256."""

    def __init__(self, files: list[ShardFile]):
        extra = [s.index for s in files if getattr(s, "index", None) is not None and os.path.exists(s.index.location)]
        self.files = [f for f in (*files, *extra) if f.sha256]
        self.problems: list[str] = []
        self.cache = cache_path()  # fixed now: the thread must not follow later changes of the environment
        self._thread = threading.Thread(target=self._run, name="mantis-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for f in self.files:
            try:
                if file_sha256(f.location, cache=self.cache) != f.sha256:
                    self.problems.append(f"{f.location}: sha256 differs from the MANIFEST's (corrupted or changed file; re-download it)")
            except OSError as exc:
                self.problems.append(f"{f.location}: cannot hash ({exc})")

    @property
    def done(self) -> bool:
        """Whether every file has been hashed."""
        return not self._thread.is_alive()

    def check(self, wait: bool = False) -> None:
        """Raise ``ReleaseError`` for the first mismatch found so far (``wait``: after hashing everything)."""
        if wait:
            self._thread.join()
        if self.problems:
            raise ReleaseError(self.problems[0])
