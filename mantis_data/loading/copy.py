"""Batch assembly's byte copies: ``memmove`` by address, split over a few threads.

Assembling a batch is mostly copying each sample's image bytes out of a memory-mapped shard into the
batch tensors (~600 kB a sample). The copies are done by ``memmove`` on addresses (through ``ctypes``,
which releases the GIL), not by numpy slice assignment: no views are made per sample and field. In a
process that builds its own batches (``num_workers=0``) a few threads share the copies of one batch; in
a DataLoader worker the workers already are the parallelism and one thread is used. Measured with
``benchmarks/loader.py`` (2 cores, batch 32, no workers): ~300 us of Python per batch besides the copies
(~500 with numpy slice assignment), and the loader at 0.86x a two-thread memmap-copy ceiling.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch.utils.data as tud

MAX_AUTO_THREADS = 4
"""Most threads ``copy_threads=None`` picks in a process that loads without workers."""

Span = tuple[int, int, int]
"""(destination address, source address, bytes) of one copy."""

_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_LOCK = threading.Lock()
_memmove = ctypes.memmove


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_copy_threads(copy_threads: int | None) -> int:
    """Threads to copy a batch with here: ``copy_threads``, or (None) 1 in a DataLoader worker and
    min(cores, ``MAX_AUTO_THREADS``) in a process without workers."""
    if copy_threads is not None:
        return max(1, int(copy_threads))
    if tud.get_worker_info() is not None:
        return 1
    return max(1, min(MAX_AUTO_THREADS, available_cores()))


def address(array: np.ndarray) -> int:
    """Address of the first byte of a C-contiguous array (``ValueError`` otherwise)."""
    if not array.flags.c_contiguous:
        raise ValueError("copy spans need C-contiguous arrays")
    return array.__array_interface__["data"][0]


def _pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of ``threads - 1`` helper threads (the caller is the last copier)."""
    key = (os.getpid(), threads)  # a forked child gets its own pool: its parent's threads do not exist there
    pool = _POOLS.get(key)
    if pool is None:
        with _LOCK:
            pool = _POOLS.get(key)
            if pool is None:
                pool = _POOLS[key] = ThreadPoolExecutor(threads - 1, thread_name_prefix="mantis-copy")
    return pool


def _copy(spans: list[Span]) -> None:
    for dst, src, n in spans:
        _memmove(dst, src, n)


def copy_spans(spans: list[Span], threads: int = 1) -> None:
    """``memmove`` every (dst, src, bytes) span, the spans dealt over ``threads`` threads by bytes.

    The caller keeps the memory of every address alive and checks the bounds; destinations must not
    overlap. Returns when all are copied; re-raises the first error of a helper thread.
    """
    if threads <= 1 or len(spans) < 2:
        _copy(spans)
        return
    sizes = np.fromiter((s[2] for s in spans), dtype=np.int64, count=len(spans))
    bounds = np.searchsorted(np.cumsum(sizes), np.arange(1, threads) * (sizes.sum() / threads)).tolist()
    chunks = [spans[a:b] for a, b in zip([0, *bounds], [*bounds, len(spans)], strict=True) if b > a]
    if len(chunks) < 2:
        _copy(spans)
        return
    pool = _pool(threads)
    futures = [pool.submit(_copy, c) for c in chunks[1:]]
    try:
        _copy(chunks[0])
    finally:
        errors = [f.exception() for f in futures]  # waits for every thread before the buffers can go away
    for err in errors:
        if err is not None:
            raise err

