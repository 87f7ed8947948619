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

EBV_FIELDS = ("ebv_csfd", "ebv_planck")
"""The two extinction columns of a sample (mag), in the order of a batch's ``ebv``."""




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
class Shard:
    relpath: str
    location: str  # local path or URL
    samples: int
    start: int  # global index of its first sample in the split


def split_shards(root: str, manifest: dict, is_url: bool, fmt: str, split: str) -> list[Shard]:
    """The split's shards of one format, in release order, with their sample counts and global offsets."""
    rows = sorted(
        (rel, info)
        for rel, info in manifest["files"].items()
        if info.get("format") == fmt and info.get("split") == split
    )
    if not rows:
        have = sorted({(i.get("format"), i.get("split")) for i in manifest["files"].values() if i.get("split")})
        raise ReleaseError(
            f"{root}: the release has no {fmt} shards for split {split!r} "
            f"(it has: {', '.join(f'{f}/{s}' for f, s in have) or 'none'})"
        )
    shards, start = [], 0
    for rel, info in rows:
        location = f"{root}/{rel}" if is_url else str(Path(root) / rel)
        if not is_url and not os.path.exists(location):
            raise ReleaseError(f"{location}: shard listed in {MANIFEST_NAME} is missing (re-download the release)")
        n = int(info.get("samples", 0))
        shards.append(Shard(rel, location, n, start))
        start += n
    if start == 0:
        raise ReleaseError(f"{root}: split {split!r} has no samples")
    return shards
