"""Batch assembly shared by both datasets: raw images -> transform -> shared-memory slots, and the scalars."""

from __future__ import annotations

import math
import os
import shutil
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud

from ..errors import MantisDataError
from ..redshift import redshift_class
from ..schema import IMAGE_FIELDS, IMAGE_SHAPES
from ..transforms import Transform
from .recycle import BufferRecycler


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """An uninitialised tensor, in shared memory when built in a DataLoader worker (so it is sent without a copy)."""
    if tud.get_worker_info() is not None and torch.device(device).type == "cpu":
        numel = math.prod(shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        storage = torch.UntypedStorage._new_shared(max(1, numel * itemsize))
        return torch.empty(0, dtype=dtype).set_(storage, 0, shape)
    return torch.empty(shape, dtype=dtype, device=device)


def _small_fields(z: np.ndarray, ebv: np.ndarray, keys: list[str], index: np.ndarray, valid: np.ndarray,
                  aug_seed: int | None, ebv_fill: float | None) -> dict:
    """The per-sample scalars of a batch as numpy arrays (converted to tensors at the end)."""
    missing = np.isnan(ebv)
    e = ebv.astype(np.float32)
    if ebv_fill is not None:
        e[missing] = ebv_fill
    out = {
        "z": np.ascontiguousarray(z, dtype=np.float64),
        "label": redshift_class(z, out_of_range="mask"),
        "ebv": e,
        "ebv_missing": missing,
        "valid": np.asarray(valid, dtype=bool),
        "index": np.asarray(index, dtype=np.int64),
        "target_id": list(keys),
    }
    if aug_seed is not None:
        out["aug_seed"] = np.array(aug_seed, dtype=np.int64)
    return out


def as_tensors(batch: dict) -> dict:
    """numpy arrays of a batch as tensors (no copy)."""
    return {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in batch.items()}


# --------------------------------------------------------------------------------------------------
# Shared-memory slots
#
# A DataLoader worker normally puts every batch in fresh shared memory, and fresh shared pages are the
# dominant cost of moving image batches (measured here: ~330 us per 594 KB sample, ten times the copy
# from the page cache). ``MantisLoader`` therefore gives each worker a few batch-sized slots of shared
# memory, allocated once: a worker writes a batch into a free slot and sends only its number and the
# small fields; the main process hands out tensors viewing the slot and gives the slot back to the
# worker once those tensors are garbage (a weak reference tells), or at once after copying into pinned
# memory when pin_memory=True. A batch stays valid as long as you hold it; holding many only makes
# workers fall back to fresh shared memory for the next ones. No slot is ever reused while referenced.
# --------------------------------------------------------------------------------------------------

SHM_DIR = Path("/dev/shm")
"""Where Linux keeps POSIX shared memory (torch's shared storages live there)."""


def check_shared_memory(need: int, what: str) -> None:
    """Raise ``MantisDataError`` when ``SHM_DIR`` has fewer than ``need`` bytes free (a full /dev/shm
    otherwise kills the workers with SIGBUS mid-epoch). No check where there is no /dev/shm."""
    if not SHM_DIR.is_dir():
        return
    free = shutil.disk_usage(SHM_DIR).free
    if need > free:
        raise MantisDataError(
            f"{what} need {need / 1e9:.2f} GB of shared memory, but {SHM_DIR} has {free / 1e9:.2f} GB free: "
            "lower shared_slots, prefetch_factor, handoff, num_workers or batch_size, or give the machine more "
            "(Docker: --shm-size=8g)"
        )


_POOLS: weakref.WeakValueDictionary[int, SlotPool] = weakref.WeakValueDictionary()
"""Pools of this process by id (a pool lives as long as its loader)."""


class SlotPool:
    """Batch-sized shared-memory slots per worker, allocated once in the main process."""

    def __init__(self, workers: int, slots: int, batch_size: int, fields: Mapping[str, tuple[tuple[int, ...], torch.dtype]]):
        self.id = int.from_bytes(os.urandom(7), "little")
        self.workers, self.slots, self.batch_size = int(workers), int(slots), int(batch_size)
        self.layout: dict[str, tuple[tuple[int, ...], torch.dtype, int]] = {}
        off = 0
        for name, (shape, dtype) in fields.items():
            itemsize = torch.empty((), dtype=dtype).element_size()
            self.layout[name] = (tuple(shape), dtype, off)
            off += (math.prod(shape) * itemsize * self.batch_size + 63) // 64 * 64
        self.slot_bytes = off
        check_shared_memory(self.workers * self.slots * off, f"{self.workers} worker(s) x {self.slots} batch slot(s)")
        self.storages = [torch.UntypedStorage._new_shared(max(1, self.slots * off)) for _ in range(self.workers)]
        self.flags = torch.zeros((self.workers, self.slots), dtype=torch.int8).share_memory_()
        self.wait_s = 0.05
        self._next = [0] * self.workers
        self._starved = [False] * self.workers
        self._arrays: dict | None = None
        self._tensors: dict | None = None
        self._flags_np: np.ndarray | None = None
        _POOLS[self.id] = self

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_flags_np"], state["_arrays"], state["_tensors"] = None, None, None
        return state

    @property
    def flags_np(self) -> np.ndarray:
        """The busy flags (workers, slots) as a numpy view (1 = in use)."""
        if self._flags_np is None:
            self._flags_np = self.flags.numpy()
        return self._flags_np

    def fits(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> bool:
        """Whether an output ``name`` of this shape and dtype has room in a slot."""
        spec = self.layout.get(name)
        return spec is not None and spec[1] == dtype and tuple(shape[1:]) == spec[0] and shape[0] <= self.batch_size

    def view(self, w: int, k: int, name: str, n: int) -> torch.Tensor:
        """Tensor (n, *shape) on field ``name`` of slot ``k`` of worker ``w`` (a slice of one cached per process)."""
        if self._tensors is None or self._tensors.get("_pid") != os.getpid():
            self._tensors = {"_pid": os.getpid()}
        t = self._tensors.get((w, k, name))
        if t is None:
            shape, dtype, off = self.layout[name]
            itemsize = torch.empty((), dtype=dtype).element_size()
            t = torch.empty(0, dtype=dtype).set_(self.storages[w], (k * self.slot_bytes + off) // itemsize,
                                                 (self.batch_size, *shape))
            self._tensors[(w, k, name)] = t
        return t[:n]

    def address(self, w: int, k: int, name: str) -> int:
        """Memory address of field ``name`` of slot ``k`` of worker ``w``."""
        return self.storages[w].data_ptr() + k * self.slot_bytes + self.layout[name][2]

    def array(self, w: int, k: int, name: str) -> np.ndarray:
        """numpy view (batch_size, *shape) of field ``name`` of slot ``k`` of worker ``w`` (cached per process)."""
        if self._arrays is None or self._arrays.get("_pid") != os.getpid():
            self._arrays = {"_pid": os.getpid()}
        a = self._arrays.get((w, k, name))
        if a is None:
            a = self._arrays[(w, k, name)] = self.view(w, k, name, self.batch_size).numpy()
        return a

    def acquire(self, w: int) -> int | None:
        """A free slot of worker ``w`` (marked busy), or None after ``wait_s`` seconds without one."""
        import time

        flags = self.flags_np
        deadline = None
        while True:
            for i in range(self.slots):
                k = (self._next[w] + i) % self.slots
                if flags[w, k] == 0:
                    flags[w, k] = 1
                    self._next[w] = (k + 1) % self.slots
                    self._starved[w] = False
                    return k
            now = time.monotonic()
            deadline = deadline or now + (0.0 if self._starved[w] else self.wait_s)
            if now >= deadline:
                self._starved[w] = True  # the caller keeps its batches: do not wait again until a slot frees
                return None
            time.sleep(0.0002)

    def release(self, w: int, k: int) -> None:
        """Give slot ``k`` back to worker ``w``."""
        self.flags_np[w, k] = 0


class SlotBatch:
    """What a worker sends for a batch written into a slot: slot number, small fields, names of slot fields."""

    def __init__(self, pool: SlotPool, w: int, k: int, n: int, batch: dict):
        self.pool_id, self.w, self.k, self.n = pool.id, w, k, n
        self.images: list[str] = []
        self.small: dict[str, Any] = {}
        for name, v in batch.items():
            if isinstance(v, torch.Tensor) and name in pool.layout and v.dim() > 0:
                if v.data_ptr() != pool.address(w, k, name):  # not written in place (fallback allocation)
                    pool.view(w, k, name, n).copy_(v)
                self.images.append(name)
            elif isinstance(v, torch.Tensor):
                self.small[name] = v.numpy()
            else:
                self.small[name] = v

    def lend(self) -> tuple[dict, list]:
        """The batch as tensors viewing the slot (main process), and weak references telling when they are free."""
        from torch.multiprocessing.reductions import StorageWeakRef

        pool = _POOLS[self.pool_id]
        out, refs = {}, []
        for name in self.images:
            t = torch.from_numpy(pool.array(self.w, self.k, name)[: self.n])  # its own storage object:
            refs.append(StorageWeakRef(t.untyped_storage()))  # expires when the caller drops every view of it
            out[name] = t
        out.update(as_tensors(self.small))
        out["_slot_w"], out["_slot_k"] = self.w, self.k
        return out, refs

    def pin_memory(self, device=None) -> dict:
        """Copy into pinned memory and free the slot (called by the DataLoader's pin-memory thread)."""
        pool = _POOLS[self.pool_id]
        out = {}
        for name in self.images:
            src = pool.view(self.w, self.k, name, self.n)
            out[name] = torch.empty(src.shape, dtype=src.dtype, pin_memory=True).copy_(src)
        pool.release(self.w, self.k)
        small = as_tensors(self.small)
        from torch.utils.data._utils.pin_memory import pin_memory as _pin

        out.update(_pin(small, device) if device is not None else _pin(small))
        return out


class BatchMaker:
    """Shared batch assembly of both datasets: raw images -> (transform) -> slot or fresh shared memory."""

    transform: Any
    images: tuple[str, ...]
    ebv_fill: float | None
    pool: SlotPool | None = None
    _scratch: dict | None = None
    verifier: Any = None
    copy_threads: int | None = None
    """Threads copying a batch's bytes (None: ``copy.resolve_copy_threads`` picks)."""

    _recycler: BufferRecycler | None = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_scratch"] = None  # per-process scratch buffers are not sent to workers
        state["_recycler"] = None
        state["verifier"] = None  # the sha256 check runs in the main process only
        return state

    def _new(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
        """A batch tensor without a slot: recycled memory in a process without workers, else ``_empty``."""
        if tud.get_worker_info() is None and torch.device(device).type == "cpu":
            if self._recycler is None:
                self._recycler = BufferRecycler()
            return self._recycler.take(shape, dtype)
        return _empty(shape, dtype, device)

    def _raw_buffers(self, n: int, worker: int | None, slot: int | None) -> dict[str, torch.Tensor]:
        if isinstance(self.transform, Transform):
            # the transform consumes them: reuse one set of buffers per process (pages stay mapped)
            if self._scratch is None or self._scratch.get("_pid") != os.getpid():
                self._scratch = {"_pid": os.getpid()}
            out = {}
            for f in self.images:
                buf = self._scratch.get(f)
                if buf is None or buf.shape[0] < n:
                    buf = torch.empty((n, *IMAGE_SHAPES[f]), dtype=torch.float32)
                    self._scratch[f] = buf
                out[f] = buf[:n]
            return out
        if slot is not None:
            return {f: self.pool.view(worker, slot, f, n) for f in self.images}
        return {f: self._new((n, *IMAGE_SHAPES[f]), torch.float32) for f in self.images}

    def make_batch(self, n: int, fill, index: np.ndarray, valid: np.ndarray, aug_seed: int | None):
        """Build one batch: ``fill(raw)`` writes the images of ``raw`` and returns (keys, z, ebv)."""
        info = tud.get_worker_info()
        pool = self.pool if info is not None else None
        w = info.id if pool is not None else None
        slot = pool.acquire(w) if pool is not None else None
        raw = self._raw_buffers(n, w, slot)
        keys, z, ebv = fill(raw)
        batch = {**raw, **_small_fields(z, ebv, keys, index, valid, aug_seed, self.ebv_fill)}
        if isinstance(self.transform, Transform):  # it passes the numpy scalars through untouched

            def alloc(name, shape, dtype, device):
                if slot is not None and pool.fits(name, shape, dtype) and torch.device(device).type == "cpu":
                    return pool.view(w, slot, name, shape[0])
                return self._new(shape, dtype, device)

            batch = self.transform(batch, alloc=alloc)
        elif self.transform is not None:
            batch = self.transform(as_tensors(batch))
        if slot is not None:
            return SlotBatch(pool, w, slot, n, batch)
        return as_tensors(batch)

    def slot_fields(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]] | None:
        """The image fields a worker sends, with per-sample shapes (None: unknown, no slots)."""
        if self.transform is None:
            return {f: (IMAGE_SHAPES[f], torch.float32) for f in self.images}
        if isinstance(self.transform, Transform):
            return {k: (v, torch.float32) for k, v in self.transform.output_shapes().items()}
        return None


def to_device(batch: Mapping, device: torch.device | str, non_blocking: bool = True) -> dict:
    """The batch with every tensor moved to ``device`` (lists such as ``target_id`` unchanged)."""
    return {k: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def check_images(images: tuple[str, ...] | None, transform) -> tuple[str, ...]:
    if images is None:
        images = tuple(getattr(transform, "surveys", IMAGE_FIELDS))
    images = tuple(f for f in IMAGE_FIELDS if f in images)
    bad = set(images) - set(IMAGE_FIELDS)
    if bad or not images:
        raise MantisDataError(f"images must be a non-empty subset of {IMAGE_FIELDS}; got {images}")
    return images
