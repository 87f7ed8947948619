"""Shard plan and shard writers: one shard task -> one WebDataset tar and one Parquet file.

The unit of work is one output shard: a fixed, deterministic list of targets. A task reads each
target's stamps, assembles and quality-checks it, and writes both encodings of the samples that pass,
atomically (temp name + rename), byte-deterministically (fixed tar headers, fixed Parquet options).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mantis_data.cutouts.base import CutoutSource
from mantis_data.errors import MantisDataError
from mantis_data.release import PARQUET_DIR, WEBDATASET_DIR, file_state, sha256_file
from mantis_data.schema import SPLITS, samples_to_table, validate_sample, webdataset_members

from .assemble import Target, assemble
from .io import atomic_path
from .split import shuffle_key
from .tar_index import add_index_and_digests, parquet_options

PARQUET_ROW_GROUP = 32
"""Samples per Parquet row group (~19 MB of images): the unit a map-style reader decodes."""


@dataclass
class ShardTask:
    """One output shard: its split, index and the targets it holds, in order.

    ``context``: what else the shard's bytes depend on besides its targets, by name (build parameters,
    dust maps, the sample-making code's hash; builders.build fills it); each entry is part of the
    fingerprint. ``reuse_root``: a finished release whose identical shard may be reused (hard-linked)
    instead of rebuilt; not part of the fingerprint.
    """

    split: str
    index: int
    targets: list[Target]
    context: dict = field(default_factory=dict)
    reuse_root: str | None = None

    @property
    def name(self) -> str:
        """File stem of the shard, e.g. ``train-00003``."""
        return f"{self.split}-{self.index:05d}"

    def parts(self) -> dict[str, str]:
        """Hash of each input of the shard known before reading it: 'targets' and each ``context`` entry."""
        h = hashlib.sha256(self.name.encode())
        for t in self.targets:
            h.update(json.dumps(asdict(t), sort_keys=True, default=str).encode())
        out = {"targets": h.hexdigest()}
        for key, value in sorted(self.context.items()):
            out[key] = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
        return out

    def fingerprint(self) -> str:
        """Hash of the task's targets and context: a rerun reuses a shard only if it (and its input files) match."""
        parts = self.parts()
        if len(parts) == 1:
            return parts["targets"]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass
class ShardResult:
    """What a shard task wrote and rejected."""

    name: str
    split: str
    fingerprint: str
    samples: list[str] = field(default_factory=list)
    rejections: dict[str, str] = field(default_factory=dict)
    files: dict[str, dict] = field(default_factory=dict)
    parts: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, list | None] = field(default_factory=dict)
    rebuilt_because: str | None = None


def plan_shards(targets: pd.DataFrame, samples_per_shard: int) -> list[ShardTask]:
    """Split accepted targets (with ``split`` and ``chunk`` columns) into shard tasks, shuffled within each split."""
    if samples_per_shard < 1:
        raise ValueError("samples_per_shard must be >= 1")
    tasks: list[ShardTask] = []
    for split in SPLITS:
        part = targets[targets["split"] == split]
        if part.empty:
            continue
        part = part.assign(_key=shuffle_key(part["target_id"])).sort_values(["_key", "target_id"], kind="stable")
        rows = [
            Target(
                target_id=r.target_id,
                survey=r.survey,
                survey_objid=str(r.survey_objid),
                ra=float(r.ra),
                dec=float(r.dec),
                z=float(r.z),
                z_conflict=bool(getattr(r, "z_conflict", False)),
                split=split,
                chunk=int(r.chunk),
                ebv_csfd=_none_if_nan(getattr(r, "ebv_csfd", None)),
                ebv_planck=_none_if_nan(getattr(r, "ebv_planck", None)),
            )
            for r in part.itertuples(index=False)
        ]
        for i in range(0, len(rows), samples_per_shard):
            tasks.append(ShardTask(split, i // samples_per_shard, rows[i : i + samples_per_shard]))
    return tasks


def _none_if_nan(value):
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


def shard_paths(out_root: Path, task: ShardTask) -> dict[str, Path]:
    """Relative paths (from the release root) of a task's two files."""
    return {
        "webdataset": Path(WEBDATASET_DIR) / "data" / f"{task.name}.tar",
        "parquet": Path(PARQUET_DIR) / "data" / f"{task.name}.parquet",
    }


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_tar(samples: list[dict], path: Path) -> None:
    """Write samples as a WebDataset tar with fixed headers (byte-deterministic), atomically."""
    with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for sample in samples:
            for name, data in webdataset_members(sample):
                tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


def write_parquet(samples: list[dict], path: Path) -> None:
    """Write samples as a Parquet file with Array3D image columns, atomically."""
    table = samples_to_table(samples)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=PARQUET_ROW_GROUP, **parquet_options(table.column_names))


TARGET_ATTEMPTS = 2
"""Times one target is read and assembled before an exception rejects it as ``error: <Type>: <message>``."""


def error_reason(exc: BaseException) -> str:
    """A rejection reason for a target whose reading or assembly raised: ``error: <Type>: <first line>``."""
    text = str(exc).strip()
    message = text.splitlines()[0][:200] if text else ""
    return f"error: {type(exc).__name__}: {message}" if message else f"error: {type(exc).__name__}"


def _read_target(target: Target, source: CutoutSource) -> tuple[dict | None, str | None]:
    """(sample, None) or (None, reason): an exception is retried, then becomes the reason (MantisDataError propagates)."""
    last: Exception | None = None
    for _ in range(TARGET_ATTEMPTS):
        try:
            stamps = source.get(target.target_id, target.ra, target.dec)
            sample, why = assemble(target, stamps)
            if why is None:
                validate_sample(sample)
            return sample, why
        except MantisDataError:
            raise  # a problem the user must fix (bad path, interrupted fetch): fail the shard, not the target
        except Exception as exc:
            last = exc
    return None, error_reason(last)


def input_state(task: ShardTask, source: CutoutSource) -> dict[str, list | None]:
    """(size, mtime_ns, sha256) of every file the source reads for the task's targets (None: absent).

    Sources that read files say which through ``input_files(target_id)`` (LocalFitsSource does);
    for others (HTTP) the result is empty and only the fingerprint decides.
    """
    files = getattr(source, "input_files", None)
    if files is None:
        return {}
    return {str(p): file_state(p) for t in task.targets for p in files(t.target_id)}


def run_shard(task: ShardTask, source: CutoutSource, out_root: str | Path) -> ShardResult:
    """Read, assemble and write one shard (both encodings); return what was written and rejected."""
    out_root = Path(out_root)
    result = ShardResult(name=task.name, split=task.split, fingerprint=task.fingerprint(), parts=task.parts())
    samples = []
    for target in task.targets:
        sample, why = _read_target(target, source)
        if why is not None:
            result.rejections[target.target_id] = why
            continue
        samples.append(sample)
    result.samples = [s["target_id"] for s in samples]
    result.inputs = input_state(task, source)
    rel = shard_paths(out_root, task)
    write_tar(samples, out_root / rel["webdataset"])
    write_parquet(samples, out_root / rel["parquet"])
    for fmt, path in rel.items():
        full = out_root / path
        result.files[path.as_posix()] = {
            "sha256": sha256_file(full),
            "bytes": full.stat().st_size,
            "samples": len(samples),
            "split": task.split,
            "format": fmt,
        }
    add_index_and_digests(result.files, out_root, samples)  # the tar's offset index, per-shard samples digest
    return result
