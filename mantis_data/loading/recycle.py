"""Batch memory of a process that builds its own batches (``num_workers=0``), reused once it is garbage.

A batch of 64 Pan-STARRS cubes is 37 MB, above glibc's largest ``mmap`` threshold (32 MB): every fresh
tensor of that size is a new mapping whose pages the kernel faults in and zeroes, then unmaps when it is
freed. Measured with ``benchmarks/loader.py --batch-size 64`` at 0 workers: 3,300 samples/s with a fresh
tensor per batch, against ~26,000 for the memmap-copy ceiling. ``BufferRecycler`` keeps a few buffers per
shape and hands out tensors on them; a buffer is reused only when every tensor handed out on it is
garbage (a weak reference to the tensor's own storage tells), so a batch you keep is never overwritten.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.multiprocessing.reductions import StorageWeakRef

KEEP = 6
"""Buffers kept per (shape, dtype); when all are in use, tensors are allocated as usual."""


class BufferRecycler:
    """CPU tensors on kept buffers, each buffer reused once every tensor handed out on it is garbage."""

    def __init__(self, keep: int = KEEP):
        self.keep = int(keep)
        self._pid = os.getpid()
        self._lent: dict[tuple, list[tuple[np.ndarray, StorageWeakRef]]] = {}
        self._free: dict[tuple, list[np.ndarray]] = {}

    def take(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` and ``dtype`` (on a reused buffer when one is free)."""
        if self._pid != os.getpid():  # forked: the parent's buffers are not this process's to reuse
            self.__init__(self.keep)
        key = (tuple(int(s) for s in shape), dtype)
        free = self._free.setdefault(key, [])
        lent = self._lent.setdefault(key, [])
        if not free:
            still = []
            for buf, ref in lent:
                (free.append(buf) if ref.expired() else still.append((buf, ref)))
            lent[:] = still
        if free:
            buf = free.pop()
        elif len(lent) < self.keep:
            buf = torch.empty(key[0], dtype=dtype).numpy()
        else:
            return torch.empty(key[0], dtype=dtype)
        out = torch.from_numpy(buf)  # a storage object of its own: it dies with the caller's last view
        lent.append((buf, StorageWeakRef(out.untyped_storage())))
        return out
