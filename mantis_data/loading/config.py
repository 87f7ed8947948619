"""``LoaderConfig``: every setting of ``make_loader`` in one frozen, JSON-serialisable dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import MantisDataError
from ..schema import IMAGE_FIELDS
from .plan import ORDERS, PAPER_BATCHES_PER_EPOCH

FORMATS = ("webdataset", "parquet")
VERIFY_MODES = ("size", "sha256", "none")
HANDOFF_SAMPLES = 256
"""Samples a DataLoader worker sends in one item when ``handoff`` is automatic (at most 4 batches)."""
HANDOFF_MAX_BATCHES = 4
IN_FLIGHT_SAMPLES = 512
"""Samples each worker of the tar path has in flight when ``prefetch_factor`` is automatic."""


@dataclass(frozen=True)
class LoaderConfig:
    """How ``make_loader`` reads a split: format, sampling, batching, workers, ranks, checks.

    format: "webdataset" (tar shards, local or URL) or "parquet" (local, map-style).
    batch_size: samples per batch.  order: one of ``ORDERS`` (see ``mantis_data.loading``).
    drop_last: keep only full batches (None: True for "shuffle", False otherwise).
    shuffle_buffer: samples mixed by each worker's shuffle ("default": 1024 for tar, 256 for Parquet;
      None: a full uniform permutation).  batches_per_epoch: per rank, for the balanced orders (paper 1000).
    balance_cap: "balanced-stream" keeps each sample with probability min(1, cap / class count)
      (None: the smallest class count).  seed: the order and augmentation depend on (seed, epoch) only.
    images: the surveys to read (None: those the transform needs, else all three).
    ebv_fill: value replacing missing E(B-V) (mag; None keeps NaN).
    num_workers, pin_memory, persistent_workers, prefetch_factor: as ``torch.utils.data.DataLoader``.
    rank, world_size: None takes them from ``torch.distributed`` (or 0, 1).
    cache_row_groups: Parquet row groups decoded and kept per worker (None: what the shuffle window spans).
    handoff: batches a DataLoader worker sends in one item (tar format; None: 256 samples' worth, 1 to 4
      batches). Each item costs the DataLoader two queue hand-offs; grouping batches amortises them. The
      order of batches, and so resuming, does not depend on it. ``prefetch_factor`` counts these items
      (None for the tar format: 512 samples in flight per worker, 2 to 8 items). Measured with
      ``benchmarks/loader_handoff.py`` (2 workers, 2 cores): batch 32 from 0.74x the ceiling (1 batch per item,
      2 in flight) to 1.00x (4 per item, 4 items); batch 64 from 0.67x to 0.83x (4 per item, 2 items).
    shared_slots: batch-sized shared-memory slots per worker (None: handoff * (prefetch_factor + 1) + 2,
      about 0.6 MB per raw sample: 0.4 to 0.8 GB per worker with the automatic settings; 0: off).
    verify: checks at open against the MANIFEST: "size" (default: each shard's size and sample keys),
      "sha256" (also each shard's sha256, hashed once in the background and cached by size and mtime),
      "none".
    copy_threads: threads copying each batch's image bytes (None: 1 in each DataLoader worker, and up to
      4, as many as there are cores, when the main process loads, num_workers=0).
    """

    format: str = "webdataset"
    batch_size: int = 64
    order: str = "shuffle"
    drop_last: bool | None = None
    shuffle_buffer: int | None | str = "default"
    batches_per_epoch: int = PAPER_BATCHES_PER_EPOCH
    balance_cap: float | None = None
    seed: int = 0
    images: tuple[str, ...] | None = None
    ebv_fill: float | None = 0.0
    num_workers: int = 2
    pin_memory: bool = False
    persistent_workers: bool | None = None
    prefetch_factor: int | None = None
    rank: int | None = None
    world_size: int | None = None
    cache_row_groups: int | None = None
    handoff: int | None = None
    shared_slots: int | None = None
    verify: str = "size"
    copy_threads: int | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise MantisDataError(f"format must be one of {FORMATS}, not {self.format!r}")
        if self.order not in ORDERS:
            raise MantisDataError(f"order must be one of {ORDERS}, not {self.order!r}")
        if self.verify not in VERIFY_MODES:
            raise MantisDataError(f"verify must be one of {VERIFY_MODES}, not {self.verify!r}")
        if int(self.batch_size) < 1:
            raise MantisDataError(f"batch_size must be >= 1, not {self.batch_size}")
        if self.images is not None:
            images = tuple(self.images)
            bad = [f for f in images if f not in IMAGE_FIELDS]
            if bad or not images:
                raise MantisDataError(f"images must be a non-empty subset of {IMAGE_FIELDS}; got {images}")
            object.__setattr__(self, "images", images)
        for name in ("batch_size", "batches_per_epoch", "seed"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if int(self.num_workers) < 0:
            raise MantisDataError(f"num_workers must be >= 0 (0: load in the main process), not {self.num_workers}")
        object.__setattr__(self, "num_workers", int(self.num_workers))
        if self.handoff is not None:
            if int(self.handoff) < 1:
                raise MantisDataError(f"handoff must be >= 1 batch (None: automatic), not {self.handoff}")
            object.__setattr__(self, "handoff", int(self.handoff))
        if self.copy_threads is not None:
            if int(self.copy_threads) < 1:
                raise MantisDataError(f"copy_threads must be >= 1 (None: automatic), not {self.copy_threads}")
            object.__setattr__(self, "copy_threads", int(self.copy_threads))

    def resolved_handoff(self) -> int:
        """Batches per DataLoader item: 1 for Parquet; ``handoff``, or 256 samples' worth (1 to 4 batches)
        when None, for tar."""
        if self.format != "webdataset":
            return 1
        if self.handoff is not None:
            return self.handoff
        return max(1, min(HANDOFF_MAX_BATCHES, HANDOFF_SAMPLES // self.batch_size))

    def resolved_prefetch(self, handoff: int) -> int:
        """DataLoader items in flight per worker: ``prefetch_factor``, or when None DataLoader's 2 for
        Parquet and 512 samples' worth (2 to 8 items) for tar."""
        if self.prefetch_factor is not None:
            return self.prefetch_factor
        if self.format != "webdataset":
            return 2
        return max(2, min(8, IN_FLIGHT_SAMPLES // (handoff * self.batch_size)))

    def replace(self, **changes: Any) -> LoaderConfig:
        """A copy with some fields changed (unknown names raise ``MantisDataError`` listing the valid ones)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise MantisDataError(f"unknown loader option(s) {unknown}; valid: {sorted(names)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict (``from_dict`` reads it back)."""
        out = dataclasses.asdict(self)
        if out["images"] is not None:
            out["images"] = list(out["images"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoaderConfig:
        """A config from ``to_dict``'s output (e.g. a checkpoint's ``state["config"]``)."""
        return cls().replace(**dict(data))
