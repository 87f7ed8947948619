"""``WebDatasetStream``: batches streamed from a split's WebDataset tar shards (local folder or URL)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.utils.data as tud

from ..errors import MantisDataError, ReleaseError
from ..redshift import redshift_class
from .batch import BatchMaker, check_images
from .copy import resolve_copy_threads
from .plan import (
    DEFAULT_SHUFFLE_BUFFER,
    PAPER_BATCHES_PER_EPOCH,
    Plan,
    Positioned,
    Stream,
    default_drop_last,
    stream_start,
)
from .redshifts import split_redshifts
from .seeds import batch_aug_seed, dist_info
from .shards import load_manifest, split_shards
from .tar import LocalTarReader, stream_tar
from .verify import ShardVerifier

_log = logging.getLogger(__name__)


class WebDatasetStream(Positioned, BatchMaker, tud.IterableDataset):
    """Batches streamed from a split's WebDataset tar shards (local release folder or release URL).

    Use with ``DataLoader(ds, batch_size=None, num_workers=...)`` or through ``make_loader``. Every rank
    yields ``len(ds)`` batches per epoch. See the module docstring for ``order`` and the batch layout.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        batch_size: int = 64,
        order: str = "shuffle",
        drop_last: bool | None = None,
        shuffle_buffer: int | None = DEFAULT_SHUFFLE_BUFFER,
        batches_per_epoch: int = PAPER_BATCHES_PER_EPOCH,
        balance_cap: float | None = None,
        seed: int = 0,
        images: tuple[str, ...] | None = None,
        transform: Callable[[dict], dict] | None = None,
        ebv_fill: float | None = 0.0,
        rank: int | None = None,
        world_size: int | None = None,
        redshifts: np.ndarray | None = None,
        verify: str = "size",
        copy_threads: int | None = None,
    ):
        super().__init__()
        self.root, manifest, self.is_url = load_manifest(root)
        self.split = split
        self.shards = split_shards(self.root, manifest, self.is_url, "webdataset", split)
        self.rank, self.world_size = dist_info(rank, world_size)
        if order == "balanced" and self.is_url:
            raise MantisDataError("order='balanced' draws samples at random and needs local shards; over URLs use 'balanced-stream'")
        labels = None
        if order in ("balanced", "balanced-stream"):
            z = split_redshifts(root, split) if redshifts is None else np.asarray(redshifts, dtype=np.float64)
            labels = redshift_class(z, out_of_range="mask")
        self.plan = Plan(
            unit_sizes=np.array([s.samples for s in self.shards]),
            order=order,
            batch_size=int(batch_size),
            drop_last=default_drop_last(order, drop_last),
            shuffle_buffer=shuffle_buffer,
            batches_per_epoch=int(batches_per_epoch),
            balance_cap=balance_cap,
            seed=int(seed),
            rank=self.rank,
            world_size=self.world_size,
            labels=labels,
        )
        self.images = check_images(images, transform)
        self.transform = transform
        self.ebv_fill = ebv_fill
        self.copy_threads = copy_threads
        self.handoff = 1  # batches per DataLoader item (``make_loader`` sets it)
        self.init_position()
        self.verifier = ShardVerifier(self.shards) if verify == "sha256" and not self.is_url else None
        self._reader = None if self.is_url else LocalTarReader(self.shards, verify)
        if order == "balanced-stream":
            _log.info("balanced-stream over %s/%s: expected acceptance rate %.4f", self.root, split, self.acceptance_rate)
        self._starts = np.array([s.start for s in self.shards] + [self.plan.n], dtype=np.int64)

    @property
    def acceptance_rate(self) -> float:
        """Expected fraction of streamed samples kept by ``order='balanced-stream'`` (1.0 otherwise)."""
        return self.plan.acceptance_rate

    @property
    def num_samples(self) -> int:
        """Samples in the split."""
        return self.plan.n

    def __len__(self) -> int:
        """Batches per rank per epoch."""
        return self.plan.n_batches

    def __iter__(self) -> Iterator:
        """Batches in the plan's order; in a worker of a ``MantisLoader`` with ``handoff > 1``, lists of
        ``handoff`` consecutive batches of this worker (one DataLoader item each, see ``loader.in_plan_order``)."""
        batches = self._batches()
        if self.handoff <= 1 or not self.continuous or tud.get_worker_info() is None:
            yield from batches
            return
        while group := list(itertools.islice(batches, self.handoff)):
            yield group

    def _batches(self) -> Iterator[dict]:
        info = tud.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        epoch, start = self.position
        nb = self.plan.n_batches
        t_epoch = -start  # index, in this iteration's output, of the epoch's batch 0
        while True:
            # DataLoader returns output t from worker t % workers; batch j of the epoch is output t_epoch + j,
            # and batch j belongs to stream j % workers: this worker serves stream (worker - t_epoch) % workers
            s, first = stream_start(start, worker, workers) if start else ((worker - t_epoch) % workers, 0)
            stream = self.plan.stream(epoch, s, workers)
            if self.is_url:
                yield from self._iter_url(stream, epoch, s, first, workers)
            else:
                for b in range(first, stream.n_batches):
                    idx, valid, _ = stream.batch(b)
                    yield self._local_batch(idx, valid, batch_aug_seed(self.plan.seed, epoch, self.rank, b * workers + s))
            if not self.continuous:
                return
            # continue with the next epoch without a restart (the loader asks for it in order)
            t_epoch += nb
            start = 0
            epoch += 1


    def _local_batch(self, idx: np.ndarray, valid: np.ndarray, aug_seed: int):
        n = len(idx)
        shard_ids = np.searchsorted(self._starts, idx, side="right") - 1

        def fill(raw: dict[str, torch.Tensor]):
            views = {f: t.numpy().reshape(n, -1).view(np.uint8) for f, t in raw.items()}
            threads = resolve_copy_threads(self.copy_threads)
            return self._reader.read_batch(shard_ids, idx - self._starts[shard_ids], views, threads)

        return self.make_batch(n, fill, idx, valid, aug_seed)

    def _iter_url(self, stream: Stream, epoch: int, s: int, first: int, workers: int) -> Iterator[dict]:
        if first >= stream.n_batches:
            return
        need = stream.emit[stream.bounds[first] :]
        wanted = set(need.tolist())
        pending: dict[int, tuple] = {}
        reader = self._url_reader(stream.read, int(need.min()), wanted)
        for b in range(first, stream.n_batches):
            idx, valid, pos = stream.batch(b)
            for p in pos:
                while int(p) not in pending:
                    rp, item = next(reader)
                    pending[rp] = item
            items = [pending.pop(int(p)) for p in pos]

            def fill(raw: dict[str, torch.Tensor], items=items):
                n = len(items)
                keys, z, ebv = [], np.empty(n), np.empty((n, 2))
                for i, (key, arrays, meta) in enumerate(items):
                    for f in self.images:
                        raw[f][i].numpy()[...] = arrays[f]
                    keys.append(key)
                    z[i], ebv[i] = meta[0], meta[1:]
                return keys, z, ebv

            yield self.make_batch(len(idx), fill, idx, valid, batch_aug_seed(self.plan.seed, epoch, self.rank, b * workers + s))

    def _url_reader(self, read: np.ndarray, from_pos: int, wanted: set[int]) -> Iterator[tuple[int, tuple]]:
        """Stream the samples ``read[from_pos:]`` shard by shard, yielding (read position, sample) for wanted positions."""
        shard_ids = np.searchsorted(self._starts, read, side="right") - 1
        pos = from_pos
        while pos < len(read):
            sid = int(shard_ids[pos])
            local0 = int(read[pos] - self._starts[sid])
            # the run of consecutive samples of this shard starting here
            end = pos + 1
            while end < len(read) and shard_ids[end] == sid and read[end] == read[end - 1] + 1:
                end += 1
            run_local = local0
            for local, key, arrays, meta in stream_tar(self.shards[sid].location, local0, self.images):
                if local != run_local:
                    raise ReleaseError(f"{self.shards[sid].location}: unexpected sample order while streaming")
                p = pos + (local - local0)
                if p in wanted:
                    missing = [f for f in self.images if f not in arrays]
                    if missing or meta is None:
                        raise ReleaseError(f"{self.shards[sid].location}: sample {key!r} lacks {missing or ['json']}")
                    yield p, (key, arrays, meta)
                run_local += 1
                if p + 1 >= end:
                    break
            else:
                if run_local - local0 < end - pos:
                    raise ReleaseError(
                        f"{self.shards[sid].location}: holds fewer samples than the manifest says (truncated shard?)"
                    )
            pos = end
