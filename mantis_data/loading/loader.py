"""``MantisLoader`` (epochs, equal batches per rank, exact resume) and ``make_loader``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch.utils.data as tud

from ..errors import MantisDataError
from ..redshift import redshift_class
from .batch import SlotBatch, SlotPool
from .config import LoaderConfig
from .mapstyle import ParquetDataset, PlanSampler
from .plan import (
    DEFAULT_PARQUET_SHUFFLE_BUFFER,
    DEFAULT_SHUFFLE_BUFFER,
    Plan,
    Positioned,
    default_drop_last,
)
from .seeds import dist_info
from .stream import WebDatasetStream


def _identity(x):
    return x


def in_plan_order(items: Iterator, workers: int) -> Iterator:
    """Single batches, in the plan's order, from DataLoader items that each hold ``k`` consecutive batches of
    one worker (item ``i`` comes from worker ``i % workers``, as without grouping).

    Without grouping, output ``t`` is worker ``t % workers``'s ``t // workers``-th batch; the same batch is
    now at place ``m % k`` of that worker's ``m // k``-th item (``m = t // workers``), so one item from each
    worker gives the next ``k * workers`` outputs.
    """
    while True:
        try:
            groups = [next(items) for _ in range(workers)]
        except StopIteration:  # workers that stopped: the caller reports it
            return
        for m in range(len(groups[0])):
            for group in groups:
                yield group[m]


class MantisLoader:
    """A DataLoader over a Mantis Shrimp dataset with epochs, equal batches per rank, and exact mid-epoch resume.

    ``for batch in loader`` yields ``len(loader)`` batches of the current epoch (``set_epoch`` selects it);
    ``state_dict()`` records the epoch and the batches consumed so far; after ``load_state_dict(state)`` the
    next iteration yields exactly the remaining batches (same samples, same augmentation).
    """

    def __init__(self, dataset, loader: tud.DataLoader, sampler: PlanSampler | None, info: dict,
                 pool: SlotPool | None = None, config: LoaderConfig | None = None):
        self.dataset = dataset
        self.loader = loader
        self.sampler = sampler
        self.info = info
        self.config = config
        self.verifier = getattr(dataset, "verifier", None)
        self.pool = pool
        self.epoch = 0
        self._start = 0
        self._done = 0
        self._lent: list[tuple[int, int, list]] = []
        self._live = None  # the running DataLoader iterator, which continues from epoch to epoch
        self._live_at: tuple[int, int] | None = None  # (epoch, batch) it yields next, when known
        self.positioned: Positioned = sampler if sampler is not None else dataset
        self.positioned.continuous = True

    @property
    def plan(self) -> Plan:
        """The sampling plan (order, batch counts, acceptance rate)."""
        return self.sampler.plan if self.sampler is not None else self.dataset.plan

    @property
    def acceptance_rate(self) -> float:
        """Expected fraction of streamed samples kept by ``order='balanced-stream'`` (1.0 otherwise)."""
        return self.plan.acceptance_rate

    def __len__(self) -> int:
        """Batches per rank per epoch."""
        return self.plan.n_batches

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a resumed position is kept when ``epoch`` is the resumed one."""
        if int(epoch) != self.epoch:
            self._start = 0
        self.epoch = int(epoch)

    def _reclaim(self) -> None:
        """Give back to the workers the slots whose lent tensors are all garbage."""
        keep = []
        for w, k, refs in self._lent:
            if all(r.expired() for r in refs):
                self.pool.release(w, k)
            else:
                keep.append((w, k, refs))
        self._lent = keep

    def __iter__(self) -> Iterator[dict]:
        start, self._start = self._start, 0
        self._done = start
        n = len(self)
        if self._live is None or self._live_at != (self.epoch, start):
            self._restart(start)
        it = self._live
        self._live_at = None  # while we are inside this epoch the live iterator's position is unknown
        while self._done < n:
            try:
                batch = next(it)
            except StopIteration:
                raise MantisDataError("the loader's workers stopped early (this is a bug in mantis_data)") from None
            if isinstance(batch, SlotBatch):
                batch, refs = batch.lend()
                self._lent.append(self._lent_key(batch, refs))
            self._done += 1
            if self._done == n:
                self._live_at = (self.epoch + 1, 0)  # the workers run on into the next epoch
            if self.verifier is not None:  # verify="sha256": no epoch completes on a damaged shard
                self.verifier.check(wait=self._done == n)
            yield batch
            if self.pool is not None:
                self._reclaim()

    def _restart(self, start: int) -> None:
        """Drop the running DataLoader iterator (if any) and start a new one at batch ``start`` of the epoch."""
        self._live = None  # shuts the old iterator's workers down (or resets persistent ones) when collected
        self.positioned.set_position(self.epoch, start)
        if self.pool is not None:
            # slots of batches the dropped iterator had in flight are free again; lent ones stay lent
            self._reclaim()
            lent = {(w, k) for w, k, _ in self._lent}
            for w in range(self.pool.workers):
                for k in range(self.pool.slots):
                    if (w, k) not in lent:
                        self.pool.release(w, k)
        self._live = iter(self.loader)
        if getattr(self.dataset, "handoff", 1) > 1 and self.loader.num_workers > 0:
            self._live = in_plan_order(self._live, self.loader.num_workers)

    def _lent_key(self, batch: dict, refs: list) -> tuple[int, int, list]:
        return batch.pop("_slot_w"), batch.pop("_slot_k"), refs

    def state_dict(self) -> dict:
        """Where the loader stands: epoch and batches consumed in it, plus the settings an exact resume needs."""
        state = {"epoch": self.epoch, "batches_done": self._done, **self.info}
        if self.config is not None:
            state["config"] = self.config.to_dict()
        return state

    def load_state_dict(self, state: Mapping) -> None:
        """Continue from ``state``: the next iteration yields the remaining batches of its epoch."""
        different = {k: (state.get(k), v) for k, v in self.info.items() if k != "rank" and state.get(k) != v}
        if different:
            raise MantisDataError(
                "cannot resume exactly: the loader's settings differ from the saved state's "
                + ", ".join(f"{k} (saved {a!r}, now {b!r})" for k, (a, b) in different.items())
            )
        start = int(state["batches_done"])
        if not 0 <= start <= len(self):
            raise MantisDataError(f"batches_done {start} is outside 0..{len(self)}")
        self.epoch = int(state["epoch"])
        self._start = self._done = start


def make_loader(
    root: str | Path,
    split: str = "train",
    config: LoaderConfig | None = None,
    *,
    transform: Callable[[dict], dict] | None = None,
    multiprocessing_context: Any = None,
    **options: Any,
) -> MantisLoader:
    """A ``MantisLoader`` over ``split`` of a release folder or URL.

    Settings come from ``config`` (a ``LoaderConfig``; default ``LoaderConfig()``), with any keyword
    ``options`` replacing its fields, so ``make_loader(root, "train", batch_size=32, order="balanced")``
    and ``make_loader(root, "train", LoaderConfig(batch_size=32, order="balanced"))`` are the same loader.
    ``transform`` (applied to each batch in the workers) and ``multiprocessing_context`` are objects, not
    settings, and are not part of the config.
    """
    config = (config or LoaderConfig()).replace(**options) if options else (config or LoaderConfig())
    rank, world_size = dist_info(config.rank, config.world_size)
    workers = config.num_workers
    batch_size, order = config.batch_size, config.order
    common = dict(images=config.images, transform=transform, ebv_fill=config.ebv_fill, verify=config.verify,
                  copy_threads=config.copy_threads)
    if config.format == "webdataset":
        buf = DEFAULT_SHUFFLE_BUFFER if config.shuffle_buffer == "default" else config.shuffle_buffer
        dataset = WebDatasetStream(
            root, split, batch_size=batch_size, order=order, drop_last=config.drop_last, shuffle_buffer=buf,
            batches_per_epoch=config.batches_per_epoch, balance_cap=config.balance_cap, seed=config.seed,
            rank=rank, world_size=world_size, **common,
        )
        sampler = None
        plan = dataset.plan
    else:
        buf = DEFAULT_PARQUET_SHUFFLE_BUFFER if config.shuffle_buffer == "default" else config.shuffle_buffer
        cache_row_groups = config.cache_row_groups
        if cache_row_groups is None:  # the row groups a shuffle window spans, plus its edges
            cache_row_groups = 4 + int(math.ceil((buf or 0) / 32.0))
        dataset = ParquetDataset(root, split, cache_row_groups=cache_row_groups, **common)
        labels = None
        if order in ("balanced", "balanced-stream"):
            labels = redshift_class(dataset.redshifts(), out_of_range="mask")
        plan = Plan(
            unit_sizes=dataset.unit_sizes, order=order, batch_size=batch_size,
            drop_last=default_drop_last(order, config.drop_last), shuffle_buffer=buf,
            batches_per_epoch=config.batches_per_epoch, balance_cap=config.balance_cap, seed=config.seed,
            rank=rank, world_size=world_size, labels=labels, shuffle_mode="window",
        )
        sampler = PlanSampler(plan, workers)
    kwargs: dict[str, Any] = {}
    pool = None
    if workers > 0:
        kwargs["persistent_workers"] = True if config.persistent_workers is None else config.persistent_workers
        if multiprocessing_context is not None:
            kwargs["multiprocessing_context"] = multiprocessing_context
        handoff = config.resolved_handoff()
        prefetch = config.resolved_prefetch(handoff)
        dataset.handoff = handoff
        kwargs["prefetch_factor"] = prefetch
        # a worker fills `handoff` slots per DataLoader item, `prefetch` items per worker are in flight,
        # the main process holds one item per worker while it hands the batches out, and ~2 are lent
        slots = handoff * (prefetch + 1) + 2 if config.shared_slots is None else int(config.shared_slots)
        fields = dataset.slot_fields(batch_size)
        if slots > 0 and fields:
            pool = SlotPool(workers, slots, batch_size, fields)
            dataset.pool = pool
    loader = tud.DataLoader(
        dataset, batch_size=None, sampler=sampler, num_workers=workers, collate_fn=_identity,
        pin_memory=config.pin_memory, **kwargs,
    )
    info = {
        "format": config.format, "split": split, "order": order, "batch_size": batch_size, "seed": config.seed,
        "world_size": world_size, "rank": rank, "num_workers": workers, "drop_last": plan.drop_last,
        "shuffle_buffer": plan.shuffle_buffer, "n_batches": plan.n_batches, "samples": plan.n,
    }
    return MantisLoader(dataset, loader, sampler, info, pool, config)
