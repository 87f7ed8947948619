"""Seeds: stable 64-bit hashes of integer tuples, seeded generators, per-batch augmentation seeds, rank info."""

from __future__ import annotations

import numpy as np

from ..errors import MantisDataError

_MASK64 = (1 << 64) - 1





def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix(*values: int) -> int:
    """A 64-bit hash of a tuple of integers (stable across processes and platforms)."""
    h = 0x6A09E667F3BCC908
    for v in values:
        h = _splitmix64(h ^ (int(v) & _MASK64))
    return h


def hash_uniform(key: int, idx: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers, one per index, a pure function of (key, index)."""
    with np.errstate(over="ignore"):
        x = idx.astype(np.uint64) ^ np.uint64(key)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def seeded_rng(*values: int) -> np.random.Generator:
    return np.random.default_rng([int(v) & _MASK64 for v in values])


def batch_aug_seed(seed: int, epoch: int, rank: int, batch: int) -> int:
    return mix(seed, epoch, rank, batch, 0xA06) & ((1 << 63) - 1)


def dist_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world size): the arguments when given, else ``torch.distributed``'s when initialised, else (0, 1)."""
    if rank is None or world_size is None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
    rank = 0 if rank is None else int(rank)
    world_size = 1 if world_size is None else int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise MantisDataError(f"rank {rank} is not in a world of size {world_size}")
    return rank, world_size
