"""Build a release: targets + a cutout source -> shards in both formats, audit, cards, MANIFEST.json.

Never half a release: everything is built into ``<out>/.staging/`` (shards, shard records, audit,
cards, manifest); only when all of it is finished is each item moved into place with a rename
(``mantis_shrimp/``, ``mantis_shrimp-parquet/``, the audit, the records, MANIFEST.json last). So each
dataset folder holds one complete release at every moment (for an instant during the swap it is
absent, and a load fails). A shard of the release being replaced whose fingerprint and input files
match is hard-linked into the stage instead of rebuilt; each rebuilt shard is reported with why
(``rebuilt train-00003: 2 cutout files changed``). ``<out>/.lock`` keeps a second build out of the folder.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import mantis_data
from mantis_data._io import FolderLock
from mantis_data.cutouts.base import CutoutSource
from mantis_data.dust import DustMaps, check_dust_maps, describe
from mantis_data.errors import InputDataError
from mantis_data.release import AUDIT_NAME, MANIFEST_NAME, PARQUET_DIR, WEBDATASET_DIR
from mantis_data.schema import IMAGE_DTYPE, IMAGE_SHAPES, SPLITS

from . import assemble as assemble_mod
from .catalogs.compile import reason_kind, summary_table
from .executor import RECORD_DIR, run_shards
from .io import atomic_write_json, atomic_write_parquet, sha256_file
from .split import N_CHUNKS, SPLIT_FRACTIONS, chunk_of, describe_split, healpix_split_of, split_of
from .write import PARQUET_ROW_GROUP, plan_shards

SAMPLE_BYTES = sum(int(np.prod(s)) for s in IMAGE_SHAPES.values()) * IMAGE_DTYPE.itemsize
"""Bytes of one sample's images (~594 KB)."""

DEFAULT_SHARD_MB = 1000.0
"""Target shard size for a full release (~1 GB, ~1,680 samples)."""


def samples_per_shard(shard_mb: float) -> int:
    """Samples per shard for a target shard size in MB (10^6 bytes)."""
    return max(1, int(shard_mb * 1e6 // SAMPLE_BYTES))


def code_version() -> str:
    """Package version plus the git commit of the checkout the builders run from, when known."""
    try:
        rev = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return f"{mantis_data.__version__}+{rev}" if rev else mantis_data.__version__


def assign_splits(targets: pd.DataFrame, scheme: str = "id", nside: int | None = None) -> pd.DataFrame:
    """Add ``split`` and ``chunk`` columns: from ``target_id`` alone, or (scheme "healpix") the split from the
    galaxy's HEALPix cell at ``nside`` (builders.split)."""
    describe_split(scheme, nside)  # checks the scheme and nside
    ids = targets["target_id"].astype(str).to_list()
    if scheme == "healpix":
        split = healpix_split_of(targets["ra"].to_numpy(), targets["dec"].to_numpy(), nside)
    else:
        split = split_of(ids)
    return targets.assign(split=split, chunk=chunk_of(ids))


STAGE_DIR = ".staging"
"""Folder under the output folder where a release is built before it is moved into place."""

REPLACED_DIR = ".replaced"
"""Folder under the output folder holding the replaced release's items during the swap (then deleted)."""

RELEASE_ITEMS = (AUDIT_NAME, RECORD_DIR, PARQUET_DIR, WEBDATASET_DIR, "README.md")  # README.md: the root card (builders.card.root_card)
"""What the swap moves from the stage into the output folder, in order (MANIFEST.json goes last)."""

SAMPLE_CODE = (
    "builders/assemble.py",
    "builders/write.py",
    "mantis_data/schema.py",
    "mantis_data/bands.py",
    "mantis_data/cutouts/base.py",
    "mantis_data/cutouts/client.py",
    "mantis_data/cutouts/fits.py",
    "mantis_data/cutouts/layout.py",
    "mantis_data/cutouts/legacysurvey.py",
    "mantis_data/cutouts/local.py",
    "mantis_data/cutouts/ps1.py",
    "mantis_data/quality.py",
)
"""The source files that turn cutouts into sample bytes: their hash is the shards' code version."""


def sample_code_hash() -> str:
    """sha256 over the SAMPLE_CODE files (a change to any of them rebuilds every shard)."""
    import hashlib

    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for rel in SAMPLE_CODE:
        path = root / rel
        h.update(rel.encode() + b"\0" + (path.read_bytes() if path.exists() else b"") + b"\0")
    return h.hexdigest()


def _remove_stale(out_root: Path, keep: set[str], tasks) -> None:
    """Delete the files (any kind: ``<shard>.*`` in the data folders) and records of shards of an earlier
    build that are not part of this one."""
    names = {t.name for t in tasks}
    for folder in (WEBDATASET_DIR, PARQUET_DIR):
        data = out_root / folder / "data"
        if data.exists():
            for path in data.iterdir():
                rel = path.relative_to(out_root).as_posix()
                if path.is_file() and rel not in keep and path.name.split(".")[0] not in names:
                    path.unlink()
    records = out_root / RECORD_DIR
    if records.exists():
        for path in records.glob("*.json"):
            if path.stem not in names:
                path.unlink()


def _shard_context(source: CutoutSource, dust: str, dust_dir, per_shard: int) -> dict:
    """What a shard's bytes depend on besides its targets and cutout files (part of every fingerprint)."""
    from mantis_data.bands import PIXEL_LIMITS
    from mantis_data.dust import required_files

    maps = []
    for path in required_files(dust, dust_dir) if dust not in ("none", "bh") else []:
        st = path.stat()
        maps.append([str(path), st.st_size, st.st_mtime_ns])
    return {
        "parameters": {
            "samples_per_shard": per_shard,
            "max_nan_fraction": assemble_mod.MAX_NAN_FRACTION,
            "pixel_limits": PIXEL_LIMITS,
            "max_offset_px": getattr(source, "max_offset_px", None),
            "source": type(source).__name__,
            "parquet_row_group": PARQUET_ROW_GROUP,
        },
        "dust": {"mode": dust, "maps": maps},
        "code": sample_code_hash(),
    }


def _swap_in(stage: Path, out_root: Path) -> None:
    """Move the finished release from ``stage`` into ``out_root``, item by item, MANIFEST.json last."""
    import shutil

    (out_root / MANIFEST_NAME).unlink(missing_ok=True)  # from here until the end the folder is not a finished release
    replaced = out_root / REPLACED_DIR
    shutil.rmtree(replaced, ignore_errors=True)
    for item in RELEASE_ITEMS:
        src, dst = stage / item, out_root / item
        if dst.exists():
            (replaced / item).parent.mkdir(parents=True, exist_ok=True)
            os.rename(dst, replaced / item)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)
    os.rename(stage / MANIFEST_NAME, out_root / MANIFEST_NAME)  # last: now the folder is a finished release
    shutil.rmtree(replaced, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)


def _input_files(catalog_audit: pd.DataFrame) -> dict[str, dict]:
    out = {}
    for (survey, source), part in catalog_audit.groupby(["survey", "source_file"]):
        path = Path(source)
        out[f"{survey}:{path.name}"] = {
            "path": str(path),
            "rows": int(len(part)),
            "sha256": sha256_file(path) if path.exists() else None,
        }
    return out


def build_release(
    targets_path: str | Path,
    source: CutoutSource,
    out: str | Path,
    *,
    catalog_audit_path: str | Path | None = None,
    version: str = "0.0.0-dev",
    shard_mb: float = DEFAULT_SHARD_MB,
    workers: int | None = None,
    dust: str = "none",
    dust_dir: str | Path | None = None,
    note: str = "",
    source_description: str = "",
    progress: bool = True,
    scheduler: str | Any | None = None,
    log: Callable[[str], None] | None = print,
    split_scheme: str = "id",
    nside: int | None = None,
) -> dict:
    """Build a release into ``out`` and return its manifest.

    ``split_scheme``: "id" (the paper's target_id hash) or "healpix" (whole HEALPix cells of ``nside``
    held out; builders.split), recorded in the manifest's ``parameters.split``.

    ``scheduler``: None runs shards on a local pool of ``workers`` processes; a Dask scheduler address
    (``tcp://host:port``) or a ``dask.distributed.Client`` runs them on that cluster (builders.executor).
    ``log`` receives one line per shard rebuilt over an earlier build, with why, and a summary line.
    Raises LockedError when another build holds ``out``.
    """
    out_root = Path(out)
    out_root.mkdir(parents=True, exist_ok=True)
    with FolderLock(out_root, "build"):
        return _build_locked(
            targets_path, source, out_root, catalog_audit_path=catalog_audit_path, version=version,
            shard_mb=shard_mb, workers=workers, dust=dust, dust_dir=dust_dir, note=note,
            source_description=source_description, progress=progress, scheduler=scheduler, log=log,
            split_scheme=split_scheme, nside=nside,
        )  # fmt: skip


def _build_locked(
    targets_path, source, out_root: Path, *, catalog_audit_path, version, shard_mb, workers, dust, dust_dir, note,
    source_description, progress, scheduler, log, split_scheme="id", nside=None,
) -> dict:  # fmt: skip
    targets_path = Path(targets_path)
    catalog_audit_path = Path(catalog_audit_path or targets_path.with_name("catalog_audit.parquet"))
    for p in (targets_path, catalog_audit_path):
        if not p.exists():
            raise InputDataError(f"{p} does not exist; run `python -m builders catalogs` first")
    check_dust_maps(dust, dust_dir)  # before any work: a missing map stops here, naming the files
    split_info = describe_split(split_scheme, nside)
    stage = out_root / STAGE_DIR
    stage.mkdir(exist_ok=True)

    targets = assign_splits(read_targets_table(targets_path), split_scheme, nside)
    if targets["target_id"].duplicated().any():
        dup = targets.loc[targets["target_id"].duplicated(), "target_id"].iloc[0]
        raise InputDataError(f"{targets_path}: target_id {dup!r} appears twice; recompile the catalogs")
    for column, values in DustMaps(dust, dust_dir).ebv(targets["ra"].to_numpy(), targets["dec"].to_numpy()).items():
        targets[column] = values
    per_shard = samples_per_shard(shard_mb)
    tasks = plan_shards(targets, per_shard)
    context = _shard_context(source, dust, dust_dir, per_shard)
    for task in tasks:
        task.context = context
        task.reuse_root = str(out_root)
    results = run_shards(tasks, source, stage, workers=workers, progress=progress, scheduler=scheduler)
    _report(results, log)

    files: dict[str, dict] = {}
    for r in results:
        files.update(r.files)
    _remove_stale(stage, set(files), tasks)
    in_release = {t for r in results for t in r.samples}
    cutout_reasons = {t: why for r in results for t, why in r.rejections.items()}

    # The audit: every input catalog row once, with its fate at the catalog and the cutout stage.
    audit = read_targets_table(catalog_audit_path, required=("target_id", "survey", "source_file", "accepted"))
    accepted = audit["accepted"].to_numpy(dtype=bool)
    tid = audit["target_id"].astype(object)
    split_map = dict(zip(targets["target_id"], targets["split"], strict=True))
    chunk_map = dict(zip(targets["target_id"], targets["chunk"], strict=True))
    audit["split"] = [split_map.get(t) if a else None for t, a in zip(tid, accepted, strict=True)]
    audit["chunk"] = pd.array([chunk_map.get(t) if a else None for t, a in zip(tid, accepted, strict=True)], dtype="Int32")
    audit["in_release"] = [bool(a and t in in_release) for t, a in zip(tid, accepted, strict=True)]
    audit["cutout_reject_reason"] = [cutout_reasons.get(t) if a else None for t, a in zip(tid, accepted, strict=True)]
    lost = audit[accepted & ~audit["in_release"] & audit["cutout_reject_reason"].isna()]
    if len(lost):
        raise RuntimeError(f"{len(lost)} accepted targets neither in the release nor rejected (first: {lost['target_id'].iloc[0]})")
    atomic_write_parquet(audit, stage / AUDIT_NAME)

    release_targets = targets[targets["target_id"].isin(in_release)]
    counts = {s: int((release_targets["split"] == s).sum()) for s in SPLITS}
    by_survey = {
        s: {k: int(v) for k, v in sorted(Counter(release_targets.loc[release_targets["split"] == s, "survey"]).items())}
        for s in SPLITS
    }
    catalog_table = summary_table(audit)
    cutout_rejections = {
        k: int(v) for k, v in sorted(Counter(reason_kind(pd.Series(list(cutout_reasons.values()), dtype=object))).items())
    }
    manifest = {
        "name": "mantis_shrimp",
        "version": version,
        "code_version": code_version(),
        "note": note,
        "counts": counts,
        "total": int(sum(counts.values())),
        "counts_by_survey": by_survey,
        "catalog_summary": {
            survey: {k: int(v) for k, v in row.items()} for survey, row in catalog_table.to_dict(orient="index").items()
        },
        "z_conflicts": int(audit.loc[audit["accepted"], "z_conflict"].sum()),
        "cutout_rejections": cutout_rejections,
        "dust": describe(dust),
        "parameters": {
            "samples_per_shard": per_shard,
            "shard_mb": shard_mb,
            "n_chunks": N_CHUNKS,
            "split_fractions": SPLIT_FRACTIONS,
            "split": split_info,
            "max_nan_fraction": assemble_mod.MAX_NAN_FRACTION,
            "parquet_row_group": PARQUET_ROW_GROUP,
            "parquet_compression": "zstd for scalar columns; image columns uncompressed PLAIN v2 pages",
        },
        "inputs": {
            "targets": {"path": str(targets_path), "rows": int(len(targets)), "sha256": sha256_file(targets_path)},
            "catalogs": _input_files(audit),
            "cutouts": source_description or type(source).__name__,
        },
        "files": files,
    }
    from .card import write_cards

    dust_note = describe(dust)["note"]
    cards = write_cards(
        stage, manifest, _shard_names(files), release_targets, catalog_table, cutout_rejections, dust_note,
        files=files,
    )  # fmt: skip
    for path in [*cards, stage / AUDIT_NAME]:
        rel = path.relative_to(stage).as_posix()
        manifest["files"][rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "format": "meta"}
    atomic_write_json(manifest, stage / MANIFEST_NAME)
    _swap_in(stage, out_root)
    return manifest


def _report(results, log) -> None:
    """One line per shard rebuilt over an earlier build (with why), then a summary."""
    if log is None:
        return
    rebuilt = [r for r in results if r.rebuilt_because not in (None, "new")]
    new = sum(r.rebuilt_because == "new" for r in results)
    for r in rebuilt:
        log(f"rebuilt {r.name}: {r.rebuilt_because}")
    kept = sum(r.rebuilt_because is None for r in results)
    log(f"shards: {len(rebuilt)} rebuilt, {new} new, {kept} unchanged (kept)")


TARGET_COLUMNS = ("target_id", "survey", "survey_objid", "ra", "dec", "z")
"""Columns a targets table must have."""


def read_targets_table(path: Path, required: tuple[str, ...] = TARGET_COLUMNS) -> pd.DataFrame:
    """A Parquet table of the catalog stage (targets.parquet, catalog_audit.parquet) with its ``required`` columns;
    a truncated or non-Parquet file, or a missing column, is an InputDataError naming the file."""
    import pyarrow as pa

    try:
        frame = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputDataError(
            f"{path}: not a readable Parquet table ({first}); recompile it with `python -m builders catalogs`"
        ) from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputDataError(f"{path}: no column {missing[0]!r} (has: {', '.join(map(str, frame.columns))}); recompile it")
    return frame


def _shard_names(files: dict[str, dict]) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {s: [] for s in SPLITS}
    for rel, info in sorted(files.items()):
        if info.get("format") == "webdataset":
            names[info["split"]].append(Path(rel).stem)
    return names


__all__ = ["build_release", "samples_per_shard", "assign_splits", "code_version"]
