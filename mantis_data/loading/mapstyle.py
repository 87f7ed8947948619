"""``ParquetDataset`` (map-style, over the Parquet shards) and ``PlanSampler``, which asks it for whole batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.utils.data as tud

from ..errors import MantisDataError
from .batch import BatchMaker, check_images
from .copy import address, copy_spans, resolve_copy_threads
from .parquet import ParquetReader
from .plan import Plan, Positioned
from .seeds import batch_aug_seed
from .shards import is_release_url, load_manifest, split_shards
from .tarindex import NBYTES
from .verify import ShardVerifier


@dataclass(frozen=True)
class BatchRequest:
    """What a ``PlanSampler`` asks a map-style dataset for: sample indices, validity, augmentation seed."""

    indices: tuple[int, ...]
    valid: tuple[bool, ...]
    aug_seed: int


class ParquetDataset(BatchMaker, tud.Dataset):
    """Map-style dataset over a split's Parquet shards (memory-mapped; row groups decoded into a per-worker cache).

    ``ds[i]`` is one sample (unbatched tensors, the transform applied with torch's RNG), so a plain
    ``DataLoader(ds, batch_size=...)`` works; ``ds[BatchRequest]`` is a batch (what ``PlanSampler`` and
    ``make_loader`` use). See the module docstring for the batch layout.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        images: tuple[str, ...] | None = None,
        transform: Callable[[dict], dict] | None = None,
        ebv_fill: float | None = 0.0,
        cache_row_groups: int = 16,
        verify: str = "size",
        copy_threads: int | None = None,
    ):
        super().__init__()
        if is_release_url(root):
            raise MantisDataError("ParquetDataset needs a local release folder; stream URLs with WebDatasetStream")
        self.root, manifest, _ = load_manifest(root)
        self.split = split
        self.shards = split_shards(self.root, manifest, False, "parquet", split)
        self.reader = ParquetReader(self.shards, cache_row_groups, verify)
        self.verifier = ShardVerifier(self.shards) if verify == "sha256" else None
        self.images = check_images(images, transform)
        self.transform = transform
        self.ebv_fill = ebv_fill
        self.copy_threads = copy_threads

    @property
    def unit_sizes(self) -> np.ndarray:
        """Samples per row group, row groups in release order."""
        return self.reader.unit_sizes

    def __len__(self) -> int:
        """Samples in the split."""
        return int(self.reader.unit_starts[-1])

    def redshifts(self) -> np.ndarray:
        """Redshift of every sample (float64), in index order."""
        import pyarrow.parquet as pq

        return np.concatenate([pq.read_table(s.location, columns=["z"]).column("z").to_numpy() for s in self.shards])

    def __getitem__(self, item: int | BatchRequest) -> dict:
        """One sample (``item`` an int) or one batch (``item`` a ``BatchRequest``)."""
        if isinstance(item, BatchRequest):
            return self._batch(np.asarray(item.indices, dtype=np.int64), np.asarray(item.valid, dtype=bool), item.aug_seed)
        i = int(item)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        i %= len(self)
        b = self._batch(np.array([i]), np.array([True]), None)  # augmentation (if any) from torch's RNG
        out = {k: (v[0] if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in b.items()}
        out["target_id"] = b["target_id"][0]
        return out

    def _batch(self, idx: np.ndarray, valid: np.ndarray, aug_seed: int | None):
        n = len(idx)
        units, rows = self.reader.locate(idx)

        def fill(raw: dict[str, torch.Tensor]):
            # copied as bytes by address: raw page values need not be 4-byte aligned
            dst = [(address(t.numpy()), f, NBYTES[f]) for f, t in raw.items()]
            keys: list[str] = [""] * n
            z, ebv = np.empty(n), np.empty((n, 2))
            spans, held = [], []  # held: the row groups copied from stay alive until the copies are done
            for u in np.unique(units):
                sel = np.flatnonzero(units == u)
                r = rows[sel]
                data = self.reader.unit(int(u), self.images)
                held.append(data)
                src = [(out, address(data[f]), nb) for out, f, nb in dst]
                for i, rr in zip(sel.tolist(), r.tolist(), strict=True):
                    for out, base, nb in src:
                        spans.append((out + i * nb, base + rr * nb, nb))
                    keys[i] = data["keys"][rr]
                z[sel] = data["z"][r]
                ebv[sel] = data["ebv"][r]
            copy_spans(spans, resolve_copy_threads(self.copy_threads))
            del held
            return keys, z, ebv

        return self.make_batch(n, fill, idx, valid, aug_seed)



class PlanSampler(Positioned, tud.Sampler):
    """Yields a rank's ``BatchRequest``s for a map-style dataset in the plan's order (use with ``batch_size=None``)."""

    def __init__(self, plan: Plan, num_workers: int):
        self.plan = plan
        self.workers = max(1, int(num_workers))
        self.init_position()

    def __len__(self) -> int:
        return self.plan.n_batches

    def __iter__(self) -> Iterator[BatchRequest]:
        w = self.workers
        epoch, start = self.position
        while True:
            streams = [self.plan.stream(epoch, s, w) for s in range(w)]
            for j in range(start, self.plan.n_batches):
                idx, valid, _ = streams[j % w].batch(j // w)
                yield BatchRequest(tuple(idx.tolist()), tuple(valid.tolist()), batch_aug_seed(self.plan.seed, epoch, self.plan.rank, j))
            if not self.continuous:
                return
            epoch, start = epoch + 1, 0
