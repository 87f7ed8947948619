"""Where a release is (local folder or URL), its MANIFEST, and the shards of one split with their sizes."""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import ReleaseError
from ..release import MANIFEST_NAME, PARQUET_DIR, WEBDATASET_DIR
from .tarindex import INDEX_FORMAT, INDEX_SUFFIX


def is_release_url(root: str | Path) -> bool:
    return isinstance(root, str) and urllib.parse.urlparse(root).scheme in ("http", "https", "file")


def _read_url(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.read()
    except OSError as exc:
        raise ReleaseError(f"{url}: cannot read ({exc})") from exc


def load_manifest(root: str | Path) -> tuple[str, dict, bool]:
    """(root as str, manifest, is_url) of a release folder (or one of its dataset folders) or a release URL."""
    if is_release_url(root):
        base = str(root).rstrip("/")
        for folder in (f"/{WEBDATASET_DIR}", f"/{PARQUET_DIR}"):  # a dataset folder: its release is the parent
            if base.endswith(folder):
                base = base[: -len(folder)]
        try:
            manifest = json.loads(_read_url(f"{base}/{MANIFEST_NAME}"))
        except (ReleaseError, json.JSONDecodeError) as exc:
            raise ReleaseError(f"{base}: no readable {MANIFEST_NAME} at this URL ({exc})") from exc
        for key in ("counts", "files"):
            if key not in manifest:
                raise ReleaseError(f"{base}/{MANIFEST_NAME}: manifest has no {key!r} entry")
        return base, manifest, True
    from ..release import open_release

    release = open_release(root)
    return str(release.root), release.manifest, False


@dataclass(frozen=True)
class ShardFile:
    """A file listed in the MANIFEST: where it is and what the MANIFEST says of it."""

    relpath: str
    location: str  # local path or URL
    bytes: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Shard(ShardFile):
    """One shard of a split: its file, sample count, first global index, and (tar) its offset index."""

    samples: int = 0
    start: int = 0  # global index of its first sample in the split
    digest: str | None = None  # MANIFEST ``samples_sha256``: keys and redshifts (tarindex.samples_digest)
    index: ShardFile | None = None  # the builder's offset index beside a tar shard, when listed


def _loc(root: str, rel: str, is_url: bool) -> str:
    return f"{root}/{rel}" if is_url else str(Path(root) / rel)


def split_shards(root: str, manifest: dict, is_url: bool, fmt: str, split: str) -> list[Shard]:
    """The split's shards of one format, in release order, with their sizes, sample counts and global offsets.

    Raises ``ReleaseError`` naming the shard when a listed shard is missing, when the data folder holds a
    shard of the split the MANIFEST does not list, or when the shards' samples do not add up to the
    MANIFEST's count for the split (an entry lost from the MANIFEST).
    """
    files = manifest["files"]
    rows = sorted((rel, info) for rel, info in files.items() if info.get("format") == fmt and info.get("split") == split)
    if not rows:
        have = sorted({(i.get("format"), i.get("split")) for i in files.values() if i.get("split")})
        raise ReleaseError(
            f"{root}: the release has no {fmt} shards for split {split!r} "
            f"(it has: {', '.join(f'{f}/{s}' for f, s in have) or 'none'})"
        )
    shards, start = [], 0
    for rel, info in rows:
        location = _loc(root, rel, is_url)
        if not is_url and not os.path.exists(location):
            raise ReleaseError(f"{location}: shard listed in {MANIFEST_NAME} is missing (re-download the release)")
        index = None
        irel = rel + INDEX_SUFFIX
        if files.get(irel, {}).get("format") == INDEX_FORMAT:
            ii = files[irel]
            index = ShardFile(irel, _loc(root, irel, is_url), ii.get("bytes"), ii.get("sha256"))
        n = int(info.get("samples", 0))
        shards.append(Shard(rel, location, info.get("bytes"), info.get("sha256"), n, start, info.get("samples_sha256"), index))
        start += n
    if start == 0:
        raise ReleaseError(f"{root}: split {split!r} has no samples")
    expected = manifest.get("counts", {}).get(split)
    if not is_url:
        folder = Path(root) / Path(rows[0][0]).parent
        suffix = Path(rows[0][0]).suffix
        for path in sorted(folder.glob(f"{split}-*{suffix}")):
            rel = path.relative_to(root).as_posix()
            if rel not in files:
                raise ReleaseError(f"{path}: shard not listed in {MANIFEST_NAME} (a damaged or mixed release; re-download it)")
    if expected is not None and int(expected) != start:
        raise ReleaseError(
            f"{root}/{MANIFEST_NAME}: the {fmt} shards of {split!r} hold {start} samples, its counts say {expected} "
            "(an entry is missing from the MANIFEST; re-download the release)"
        )
    return shards
