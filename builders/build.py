"""Build a release: targets + a cutout source -> shards in both formats, audit, cards, MANIFEST.json.

The final manifest, audit and cards are written once, after every shard is in place; MANIFEST.json
is written last, so a folder with a manifest is a finished release.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import mantis_data
from mantis_data.cutouts.base import CutoutSource
from mantis_data.dust import DustMaps, check_dust_maps, describe
from mantis_data.errors import InputDataError
from mantis_data.release import AUDIT_NAME, MANIFEST_NAME, PARQUET_DIR, WEBDATASET_DIR
from mantis_data.schema import IMAGE_DTYPE, IMAGE_SHAPES, SPLITS

from . import assemble as assemble_mod
from .catalogs.compile import reason_kind, summary_table
from .executor import run_shards
from .io import atomic_write_json, atomic_write_parquet, sha256_file
from .split import N_CHUNKS, SPLIT_FRACTIONS, chunk_of, split_of
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


def assign_splits(targets: pd.DataFrame) -> pd.DataFrame:
    """Add ``split`` and ``chunk`` columns computed from ``target_id`` alone."""
    ids = targets["target_id"].astype(str).to_list()
    return targets.assign(split=split_of(ids), chunk=chunk_of(ids))


def _remove_stale(out_root: Path, keep: set[str]) -> None:
    """Delete shard files and records of an earlier build that are not part of this one."""
    for folder, suffix in ((WEBDATASET_DIR, ".tar"), (PARQUET_DIR, ".parquet")):
        data = out_root / folder / "data"
        if data.exists():
            for path in data.glob(f"*{suffix}"):
                if path.relative_to(out_root).as_posix() not in keep:
                    path.unlink()


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
) -> dict:
    """Build a release into ``out`` and return its manifest.

    ``scheduler``: None runs shards on a local pool of ``workers`` processes; a Dask scheduler address
    (``tcp://host:port``) or a ``dask.distributed.Client`` runs them on that cluster (builders.executor).
    """
    targets_path = Path(targets_path)
    catalog_audit_path = Path(catalog_audit_path or targets_path.with_name("catalog_audit.parquet"))
    for p in (targets_path, catalog_audit_path):
        if not p.exists():
            raise InputDataError(f"{p} does not exist; run `python -m builders catalogs` first")
    check_dust_maps(dust, dust_dir)  # before any work: a missing map stops here, naming the files
    out_root = Path(out)
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / MANIFEST_NAME).unlink(missing_ok=True)  # the folder is not a finished release until rewritten

    targets = assign_splits(pd.read_parquet(targets_path))
    if targets["target_id"].duplicated().any():
        dup = targets.loc[targets["target_id"].duplicated(), "target_id"].iloc[0]
        raise InputDataError(f"{targets_path}: target_id {dup!r} appears twice; recompile the catalogs")
    for column, values in DustMaps(dust, dust_dir).ebv(targets["ra"].to_numpy(), targets["dec"].to_numpy()).items():
        targets[column] = values
    per_shard = samples_per_shard(shard_mb)
    tasks = plan_shards(targets, per_shard)
    results = run_shards(tasks, source, out_root, workers=workers, progress=progress, scheduler=scheduler)

    files: dict[str, dict] = {}
    for r in results:
        files.update(r.files)
    _remove_stale(out_root, set(files))
    in_release = {t for r in results for t in r.samples}
    cutout_reasons = {t: why for r in results for t, why in r.rejections.items()}

    # The audit: every input catalog row once, with its fate at the catalog and the cutout stage.
    audit = pd.read_parquet(catalog_audit_path)
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
    atomic_write_parquet(audit, out_root / AUDIT_NAME)

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
    cards = write_cards(out_root, manifest, _shard_names(files), release_targets, catalog_table, cutout_rejections, dust_note)
    for path in [*cards, out_root / AUDIT_NAME]:
        rel = path.relative_to(out_root).as_posix()
        manifest["files"][rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "format": "meta"}
    atomic_write_json(manifest, out_root / MANIFEST_NAME)
    return manifest


def _shard_names(files: dict[str, dict]) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {s: [] for s in SPLITS}
    for rel, info in sorted(files.items()):
        if info.get("format") == "webdataset":
            names[info["split"]].append(Path(rel).stem)
    return names


__all__ = ["build_release", "samples_per_shard", "assign_splits", "code_version"]
