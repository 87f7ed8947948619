"""Open a Mantis Shrimp release folder: its manifest, counts and files; verify checksums and structure.

A release folder holds::

    MANIFEST.json                      version, inputs, parameters, per-file sha256 and counts
    targets_audit.parquet              every input catalog row, accepted or with a reject reason
    mantis_shrimp/README.md            card (YAML configs) + data/{split}-{i:05d}.tar   (WebDataset)
    mantis_shrimp-parquet/README.md    card + data/{split}-{i:05d}.parquet               (Parquet)
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .errors import ReleaseError
from .schema import IMAGE_FIELDS, SCALAR_FIELDS, SPLITS

WEBDATASET_DIR = "mantis_shrimp"
PARQUET_DIR = "mantis_shrimp-parquet"
MANIFEST_NAME = "MANIFEST.json"
AUDIT_NAME = "targets_audit.parquet"
WEBDATASET_MEMBERS = tuple(f"{f}.npy" for f in IMAGE_FIELDS) + ("json",)


def sha256_file(path: str | Path, block: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def file_state(path: str | Path) -> list | None:
    """[size in bytes, mtime in ns, sha256] of a file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns, sha256_file(path)]


def changed_files(recorded: dict[str, list | None]) -> list[str]:
    """The files of ``recorded`` ({path: file_state or None}) that differ now: appeared, vanished or new content.

    Size + mtime equal means unchanged; otherwise the content hash decides (a touched file is unchanged).
    """
    changed = []
    for path, then in recorded.items():
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if then is not None:
                changed.append(path)
            continue
        if then is None:
            changed.append(path)
        elif st.st_size != then[0]:
            changed.append(path)
        elif st.st_mtime_ns != then[1] and sha256_file(path) != then[2]:
            changed.append(path)
    return changed


@dataclass
class Release:
    """A release folder and its manifest."""

    root: Path
    manifest: dict

    @property
    def version(self) -> str:
        """Release version string."""
        return str(self.manifest.get("version"))

    @property
    def counts(self) -> dict[str, int]:
        """Samples per split."""
        return {k: int(v) for k, v in self.manifest["counts"].items()}

    def shards(self, fmt: str = "webdataset", split: str | None = None) -> list[Path]:
        """Absolute shard paths of one format ("webdataset" or "parquet"), optionally of one split, in order."""
        out = [
            self.root / rel
            for rel, info in sorted(self.manifest["files"].items())
            if info.get("format") == fmt and (split is None or info.get("split") == split)
        ]
        return out


def open_release(root: str | Path) -> Release:
    """Open a release folder (the one holding MANIFEST.json, or one of its two dataset folders)."""
    root = Path(root)
    if not root.exists():
        raise ReleaseError(f"{root} does not exist")
    if not (root / MANIFEST_NAME).exists() and (root.parent / MANIFEST_NAME).exists():
        root = root.parent
    path = root / MANIFEST_NAME
    if not path.exists():
        raise ReleaseError(f"{root} is not a Mantis Shrimp release: no {MANIFEST_NAME} (build one with `python -m builders demo`)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReleaseError(f"{path}: unreadable manifest ({exc})") from exc
    for key in ("version", "counts", "files"):
        if key not in manifest:
            raise ReleaseError(f"{path}: manifest has no {key!r} entry")
    return Release(root=root, manifest=manifest)


def _check_tar(path: Path, expected_samples: int) -> str | None:
    try:
        with tarfile.open(path, "r:") as tar:
            names = tar.getnames()
    except (tarfile.TarError, OSError, EOFError) as exc:
        return f"not a readable tar ({exc})"
    members: dict[str, list[str]] = {}
    for name in names:
        key, _, field = Path(name).name.partition(".")
        members.setdefault(key, []).append(field)
    for key, fields in members.items():
        if sorted(fields) != sorted(WEBDATASET_MEMBERS):
            return f"sample {key!r} has members {sorted(fields)}, expected {sorted(WEBDATASET_MEMBERS)}"
    if len(members) != expected_samples:
        return f"holds {len(members)} samples, manifest says {expected_samples}"
    return None


def _check_parquet(path: Path, expected_samples: int) -> str | None:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:  # pyarrow raises several types for corrupt files
        return f"not a readable Parquet file ({exc})"
    names = set(meta.schema.to_arrow_schema().names)
    missing = [c for c in ("target_id", *IMAGE_FIELDS, *SCALAR_FIELDS) if c not in names]
    if missing:
        return f"missing columns {missing}"
    if meta.num_rows != expected_samples:
        return f"holds {meta.num_rows} samples, manifest says {expected_samples}"
    return None


def _check_index(path: Path, tar_path: Path, expected_samples: int) -> str | None:
    """Problem with a tar shard's offset index (``<shard>.tar.idx``), or None."""
    from .loading.tarindex import decode_index

    try:
        index, tar_bytes = decode_index(path.read_bytes(), str(path), str(tar_path))
    except ReleaseError as exc:
        return str(exc).split(": ", 1)[-1]
    if not tar_path.exists() or tar_path.stat().st_size != tar_bytes:
        return f"written for a {tar_bytes}-byte {tar_path.name}, which is missing or has another size"
    if len(index) != expected_samples:
        return f"indexes {len(index)} samples, manifest says {expected_samples}"
    return None


def verify(root: str | Path, progress: bool = False) -> list[str]:
    """Check every file of a release against its manifest; return problems (empty = release is intact).

    Checks: each listed file exists with its size and sha256; no unlisted shard in a data folder;
    each tar has the 4 members per sample and each Parquet file the schema's columns; each tar's offset
    index (``<shard>.tar.idx``, optional) is readable and written for that tar; sample counts
    per file and per split agree with the manifest.
    """
    release = open_release(root)
    problems: list[str] = []
    files = release.manifest["files"]
    iterator = sorted(files.items())
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="verify", unit="file")
    per_split: dict[str, Counter] = {"webdataset": Counter(), "parquet": Counter()}
    unchecked: set[tuple[str, str]] = set()  # (format, split) with a file already reported: no count line
    for rel, info in iterator:
        path = release.root / rel
        why = None
        if not path.exists():
            why = f"{rel}: missing"
        elif path.stat().st_size != info.get("bytes"):
            why = f"{rel}: size {path.stat().st_size} bytes, manifest says {info.get('bytes')}"
        elif sha256_file(path) != info.get("sha256"):
            why = f"{rel}: sha256 mismatch (file corrupted or changed)"
        if why is not None:
            problems.append(why)
            unchecked.add((info.get("format"), info.get("split")))
            continue
        fmt = info.get("format")
        if fmt == "webdataset":
            why = _check_tar(path, int(info["samples"]))
        elif fmt == "parquet":
            why = _check_parquet(path, int(info["samples"]))
        elif fmt == "webdataset-index":
            why = _check_index(path, release.root / rel[: -len(".idx")], int(info["samples"]))
        else:
            why = None
        if why:
            problems.append(f"{rel}: {why}")
        if fmt in per_split:
            per_split[fmt][info["split"]] += int(info["samples"])
    for folder, suffix in ((WEBDATASET_DIR, ".tar"), (PARQUET_DIR, ".parquet")):
        data = release.root / folder / "data"
        if data.exists():
            for path in sorted(data.iterdir()):
                rel = path.relative_to(release.root).as_posix()
                if path.suffix == suffix and rel not in files:
                    problems.append(f"{rel}: shard not listed in the manifest")
    for fmt, counter in per_split.items():
        for split in SPLITS:
            expected = release.counts.get(split, 0)
            if counter.get(split, 0) != expected and (fmt, split) not in unchecked:
                problems.append(f"{fmt} {split}: files hold {counter.get(split, 0)} samples, manifest says {expected}")
    problems += stale_inputs(release)
    return problems


BUILD_RECORDS = ".build/shards"
"""Folder (under the release root) of the builder's per-shard records: what each shard was built from."""


def stale_inputs(release: Release) -> list[str]:
    """'stale: ...' problems: inputs recorded at build time (targets file, each shard's cutout files) that
    changed since, so a rebuild would give other bytes. Inputs whose folder is gone (a copied or published
    release) cannot be checked and are skipped."""
    problems = []
    targets = release.manifest.get("inputs", {}).get("targets") or {}
    tpath = targets.get("path")
    if tpath and targets.get("sha256") and Path(tpath).exists() and sha256_file(tpath) != targets["sha256"]:
        problems.append(f"stale: {tpath} changed since the build; rerun the build")
    records = release.root / BUILD_RECORDS
    for rec in sorted(records.glob("*.json")) if records.is_dir() else []:
        try:
            inputs = json.loads(rec.read_text()).get("inputs") or {}
        except (OSError, ValueError, AttributeError):
            continue
        checkable = {p: v for p, v in inputs.items() if Path(p).parent.parent.exists()}
        changed = changed_files(checkable)
        if changed:
            n = len(changed)
            problems.append(
                f"stale: {rec.stem}: {n} cutout file{'s' if n != 1 else ''} changed since the build "
                f"(first: {changed[0]}); rerun the build to update it"
            )
    return problems
