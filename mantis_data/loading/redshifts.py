"""The spectroscopic redshift of every sample of a split, in the loaders' order, without reading images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ReleaseError
from .shards import load_manifest, split_shards
from .tar import shard_index, stream_tar


def split_redshifts(root: str | Path, split: str = "train") -> np.ndarray:
    """Spectroscopic redshift of every sample of a split (float64, NaN if missing), in the loaders' order."""
    root_s, manifest, is_url = load_manifest(root)
    tars = split_shards(root_s, manifest, is_url, "webdataset", split)
    if not is_url:
        try:
            pqs = split_shards(root_s, manifest, is_url, "parquet", split)
        except ReleaseError:
            pqs = []
        same = len(pqs) == len(tars) and all(
            Path(a.relpath).stem == Path(b.relpath).stem and a.samples == b.samples for a, b in zip(pqs, tars, strict=True)
        )
        if same:
            import pyarrow.parquet as pq

            parts = []
            for shard in pqs:
                try:
                    parts.append(pq.read_table(shard.location, columns=["z"]).column("z").to_numpy())
                except Exception as exc:
                    raise ReleaseError(f"{shard.location}: cannot read column z ({exc})") from exc
            return np.concatenate(parts).astype(np.float64)
        return np.concatenate([shard_index(s).z for s in tars])
    out = np.full(tars[-1].start + tars[-1].samples, np.nan)
    for s in tars:
        for local, _, _, meta in stream_tar(s.location, 0, ()):
            out[s.start + local] = meta[0]
    return out
