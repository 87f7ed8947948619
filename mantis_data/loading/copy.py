"""Batch assembly's byte copies, split over a few threads.

Assembling a batch is mostly copying each sample's image bytes out of a memory-mapped shard into the
batch tensors (~600 kB a sample). numpy releases the GIL while it copies, so in a process that builds its
own batches (``num_workers=0``) a few threads copy one batch faster than one thread does; in a DataLoader
worker the workers already are the parallelism and one thread is used. Measured with
``benchmarks/loader.py`` (2 cores): one thread copies ~12,000 samples/s out of the page cache, two
threads ~20,000.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch.utils.data as tud

MAX_AUTO_THREADS = 4
"""Most threads ``copy_threads=None`` picks in a process that loads without workers."""

_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


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


def _copy(pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for dst, src in pairs:
        dst[...] = src


def copy_pairs(pairs: list[tuple[np.ndarray, np.ndarray]], threads: int = 1) -> None:
    """``dst[...] = src`` for every (dst, src) pair, the pairs dealt over ``threads`` threads by bytes.

    The destinations must not overlap (each thread writes its own pairs); the call returns when all are
    copied and re-raises the first error of any thread.
    """
    if threads <= 1 or len(pairs) < 2:
        _copy(pairs)
        return
    sizes = np.fromiter((p[0].nbytes for p in pairs), dtype=np.int64, count=len(pairs))
    bounds = np.searchsorted(np.cumsum(sizes), np.arange(1, threads) * (sizes.sum() / threads))
    chunks = [c for c in np.split(np.arange(len(pairs)), bounds) if len(c)]
    if len(chunks) < 2:
        _copy(pairs)
        return
    pool = _pool(threads)
    futures = [pool.submit(_copy, [pairs[i] for i in c.tolist()]) for c in chunks[1:]]
    try:
        _copy([pairs[i] for i in chunks[0].tolist()])
    finally:
        errors = [f.exception() for f in futures]  # waits for every thread before the buffers can go away
    for err in errors:
        if err is not None:
            raise err
