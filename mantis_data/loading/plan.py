"""The sampling plan: the deterministic per-epoch order of a rank's samples and its split into worker streams."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import MantisDataError
from ..redshift import N_BINS
from .seeds import hash_uniform, mix, seeded_rng

ORDERS = ("sequential", "shuffle", "balanced", "balanced-stream")
PAPER_BATCHES_PER_EPOCH = 1000
"""Batches per epoch (per rank) of the paper's class-balanced sampling."""
DEFAULT_SHUFFLE_BUFFER = 1024
"""Samples in the shuffle buffer of each worker's stream (WebDataset)."""
DEFAULT_PARQUET_SHUFFLE_BUFFER = 256
"""Shuffle buffer for Parquet: ~8 row groups, which the row-group cache holds."""




@dataclass
class Stream:
    """One worker's share of a rank's epoch: what it reads, and what it emits in which batches."""

    read: np.ndarray  # global sample indices in the order a sequential reader meets them
    emit: np.ndarray  # positions into ``read``, in output order
    valid: np.ndarray  # bool per emitted sample (False: padding)
    bounds: np.ndarray  # batch b is emit[bounds[b]:bounds[b + 1]]

    @property
    def n_batches(self) -> int:
        return len(self.bounds) - 1

    def batch(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(global indices, valid flags, positions into ``read``) of local batch ``b``."""
        pos = self.emit[self.bounds[b] : self.bounds[b + 1]]
        return self.read[pos], self.valid[self.bounds[b] : self.bounds[b + 1]], pos


def _buffer_shuffle(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Output order of a shuffle buffer of ``k`` items over a stream of ``n``: a local shuffle in which each
    item moves at most ``k`` places (items sorted by position + k * uniform), so a sequential reader holds
    about ``k`` items at a time. Vectorised: the same mixing as a size-k reservoir, without a Python loop."""
    if n <= 1 or k <= 1:
        return np.arange(n, dtype=np.int64)
    keys = np.arange(n, dtype=np.float64) + rng.random(n) * min(k, n)
    return np.argsort(keys, kind="stable").astype(np.int64)


def _window_shuffle(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Output order of a windowed shuffle: consecutive windows of ``k`` items, each emitted in random order.

    Unlike a shuffle buffer, whose items can wait arbitrarily long, a window touches only the ~k/32 row
    groups it covers, so a row-group cache of that size is enough (Parquet).
    """
    if n <= 1 or k <= 1:
        return np.arange(n, dtype=np.int64)
    out = np.arange(n, dtype=np.int64)
    for lo in range(0, n, k):
        out[lo : lo + k] = lo + rng.permutation(min(k, n - lo))
    return out


@dataclass
class Plan:
    """The deterministic per-epoch order of samples for one rank: all the sampling logic, no I/O."""

    unit_sizes: np.ndarray  # samples per unit (shard or row group), units in global order
    order: str
    batch_size: int
    drop_last: bool
    shuffle_buffer: int | None
    batches_per_epoch: int
    balance_cap: float | None
    seed: int
    rank: int
    world_size: int
    labels: np.ndarray | None = None  # class per sample (-1: none); needed by the balanced orders
    shuffle_mode: str = "buffer"  # "buffer" (WebDataset) or "window" (Parquet: bounded row-group reuse)

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise MantisDataError(f"order must be one of {ORDERS}, not {self.order!r}")
        if self.batch_size < 1:
            raise MantisDataError(f"batch_size must be >= 1, not {self.batch_size}")
        self.unit_sizes = np.asarray(self.unit_sizes, dtype=np.int64)
        self.unit_starts = np.concatenate([[0], np.cumsum(self.unit_sizes)]).astype(np.int64)
        self.n = int(self.unit_starts[-1])
        if self.order in ("balanced", "balanced-stream"):
            if self.labels is None:
                raise MantisDataError(f"order={self.order!r} needs the redshift classes of the split")
            if self.batches_per_epoch < 1:
                raise MantisDataError(f"batches_per_epoch must be >= 1, not {self.batches_per_epoch}")
            lab = np.asarray(self.labels, dtype=np.int64)
            counts = np.bincount(lab[lab >= 0], minlength=N_BINS)
            self.class_counts = counts
            present = np.flatnonzero(counts)
            if len(present) == 0:
                raise MantisDataError("no sample of the split has a redshift inside the label grid; cannot balance")
            self.present = present
            by_class = np.argsort(np.where(lab >= 0, lab, N_BINS), kind="stable")
            self.by_class = by_class
            self.class_start = np.concatenate([[0], np.cumsum(counts)])
            cap = float(counts[present].min()) if self.balance_cap is None else float(self.balance_cap)
            accept = np.where(counts > 0, np.minimum(1.0, cap / np.maximum(counts, 1)), 0.0)
            self.accept = np.concatenate([accept, [0.0]])  # index -1 -> 0
            self.acceptance_rate = float((counts * accept).sum() / max(1, len(lab)))
        else:
            self.acceptance_rate = 1.0
        per_rank = self.n // self.world_size if self.drop_last else -(-self.n // self.world_size)
        self.per_rank = per_rank
        if self.order in ("balanced", "balanced-stream"):
            self.n_batches = self.batches_per_epoch
        elif self.drop_last:
            self.n_batches = per_rank // self.batch_size
        else:
            self.n_batches = -(-per_rank // self.batch_size)
        if self.n_batches == 0:
            raise MantisDataError(
                f"{self.n} samples over {self.world_size} rank(s) make no batch of {self.batch_size}"
                + (" with drop_last=True" if self.drop_last else "")
            )

    # -- epoch orders ------------------------------------------------------------------------------

    def _sequence(self, *key: int) -> np.ndarray:
        """The split's samples in this epoch's order (before rank slicing)."""
        if self.order == "sequential":
            return np.arange(self.n, dtype=np.int64)
        rng = seeded_rng(self.seed, *key, 0x5E9)
        if self.shuffle_buffer is None:
            return rng.permutation(self.n).astype(np.int64)
        perm = rng.permutation(len(self.unit_sizes))
        lens = self.unit_sizes[perm]
        starts = self.unit_starts[:-1][perm]
        offsets = np.concatenate([[0], np.cumsum(lens)[:-1]])
        return (np.repeat(starts - offsets, lens) + np.arange(int(lens.sum()), dtype=np.int64)).astype(np.int64)

    def _local_shuffle(self, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
        return (_window_shuffle if self.shuffle_mode == "window" else _buffer_shuffle)(n, k, rng)

    def _rank_slice(self, seq: np.ndarray, per_rank: int) -> tuple[np.ndarray, np.ndarray]:
        pos = np.arange(self.rank * per_rank, (self.rank + 1) * per_rank, dtype=np.int64)
        return seq[pos % self.n], pos < self.n

    def stream_batches(self, s: int, workers: int) -> int:
        """Batches of stream ``s`` of ``workers`` (batch ``j`` of the rank belongs to stream ``j % workers``)."""
        return len(range(s, self.n_batches, workers))

    def _batch_sizes(self) -> np.ndarray:
        sizes = np.full(self.n_batches, self.batch_size, dtype=np.int64)
        if not self.drop_last and self.order in ("sequential", "shuffle"):
            sizes[-1] = self.per_rank - (self.n_batches - 1) * self.batch_size
        return sizes

    def stream(self, epoch: int, s: int, workers: int) -> Stream:
        """Stream ``s`` of ``workers`` of this rank in ``epoch``."""
        if self.order == "balanced":
            return self._balanced_stream(epoch, s, workers)
        if self.order == "balanced-stream":
            return self._accept_stream(epoch, s, workers)
        sizes = self._batch_sizes()
        per_stream = np.array([sizes[t::workers].sum() for t in range(workers)], dtype=np.int64)
        lo = int(per_stream[:s].sum())
        seq, valid = self._rank_slice(self._sequence(epoch), self.per_rank)
        read, valid = seq[lo : lo + per_stream[s]], valid[lo : lo + per_stream[s]]
        if self.order == "shuffle" and self.shuffle_buffer:
            emit = self._local_shuffle(len(read), int(self.shuffle_buffer), seeded_rng(self.seed, epoch, self.rank, s, workers, 0xB0F))
        else:
            emit = np.arange(len(read), dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(sizes[s::workers])]).astype(np.int64)
        return Stream(read=read, emit=emit, valid=valid[emit], bounds=bounds)

    def _balanced_draws(self, epoch: int) -> np.ndarray:
        """This rank's class-balanced draws for ``epoch``: (n_batches * batch_size,) global indices."""
        per_rank = self.n_batches * self.batch_size
        total = per_rank * self.world_size
        rng = seeded_rng(self.seed, epoch, 0xBA1)
        cls = self.present[rng.integers(0, len(self.present), size=total)]
        member = np.minimum((rng.random(total) * self.class_counts[cls]).astype(np.int64), self.class_counts[cls] - 1)
        draws = self.by_class[self.class_start[cls] + member]
        return draws[self.rank * per_rank : (self.rank + 1) * per_rank].astype(np.int64)

    def _balanced_stream(self, epoch: int, s: int, workers: int) -> Stream:
        draws = self._balanced_draws(epoch).reshape(self.n_batches, self.batch_size)
        read = draws[s::workers].reshape(-1)
        bounds = np.arange(self.stream_batches(s, workers) + 1, dtype=np.int64) * self.batch_size
        return Stream(read=read, emit=np.arange(len(read), dtype=np.int64), valid=np.ones(len(read), bool), bounds=bounds)

    def _accept_stream(self, epoch: int, s: int, workers: int) -> Stream:
        quota = self.stream_batches(s, workers) * self.batch_size
        per_rank = self.n // self.world_size
        lo, hi = s * per_rank // workers, (s + 1) * per_rank // workers
        if hi <= lo:
            raise MantisDataError(
                f"{self.n} samples are too few to stream to {self.world_size} rank(s) x {workers} worker(s)"
            )
        expected = max(self.acceptance_rate * (hi - lo), 1e-9)
        max_passes = int(10 + 5 * quota / expected)
        reads, emits, got, offset, p = [], [], 0, 0, 0
        while got < quota:
            if p >= max_passes:
                raise MantisDataError(f"balanced-stream: acceptance rate {self.acceptance_rate:.2e} is too low to fill an epoch")
            seq, _ = self._rank_slice(self._sequence(epoch, p), per_rank)
            block = seq[lo:hi]
            u = hash_uniform(mix(self.seed, epoch, p, 0xACC), block)
            keep = np.flatnonzero(u < self.accept[self.labels[block]])
            order = self._local_shuffle(len(keep), int(self.shuffle_buffer or 1), seeded_rng(self.seed, epoch, p, self.rank, s, workers, 0xB0F))
            emits.append(keep[order][: quota - got] + offset)
            got += len(emits[-1])
            reads.append(block)
            offset += len(block)
            p += 1
        emit = np.concatenate(emits)
        bounds = np.arange(self.stream_batches(s, workers) + 1, dtype=np.int64) * self.batch_size
        return Stream(read=np.concatenate(reads), emit=emit, valid=np.ones(len(emit), bool), bounds=bounds)


def stream_start(start: int, worker: int, workers: int) -> tuple[int, int]:
    """After ``start`` batches of the rank, the stream worker ``worker`` continues and its first local batch."""
    j = start + worker
    return j % workers, j // workers



def default_drop_last(order: str, drop_last: bool | None) -> bool:
    return (order == "shuffle") if drop_last is None else bool(drop_last)


class Positioned:
    """Where the next iteration starts (epoch, batch), shared by ``WebDatasetStream`` and ``PlanSampler``.

    The position lives in a 2-element shared-memory tensor, so persistent DataLoader workers see a new
    position without a restart. ``continuous`` makes an iteration run on into the following epochs
    (``MantisLoader`` sets it). Subclasses have a ``plan`` and call ``init_position()`` in ``__init__``.
    """

    plan: Plan
    continuous: bool = False

    def init_position(self) -> None:
        """Start at batch 0 of epoch 0."""
        self._position = torch.zeros(2, dtype=torch.int64).share_memory_()
        self.continuous = False

    @property
    def position(self) -> tuple[int, int]:
        """(epoch, first batch) of the next iteration."""
        return int(self._position[0]), int(self._position[1])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (the sample order depends on seed and epoch); starts at its first batch."""
        self.set_position(epoch, 0)

    def set_position(self, epoch: int, batches_done: int) -> None:
        """Make the next iteration start at batch ``batches_done`` of ``epoch`` (seen by persistent workers too)."""
        if not 0 <= batches_done <= self.plan.n_batches:
            raise MantisDataError(f"batches_done must be in 0..{self.plan.n_batches}, not {batches_done}")
        self._position[0] = int(epoch)
        self._position[1] = int(batches_done)

