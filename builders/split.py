"""Deterministic train/validation/test assignment from ``target_id`` alone (the paper's scheme).

A first hash of the id picks one of 16 chunks; a second, independent hash places the galaxy at
70/10/20 % train/validation/test inside its chunk. Nothing else enters, so rebuilding or adding
galaxies never moves an existing galaxy to another split.
"""

from __future__ import annotations

import hashlib

import numpy as np

N_CHUNKS = 16
SPLIT_FRACTIONS: dict[str, float] = {"train": 0.7, "validation": 0.1, "test": 0.2}


def _unit_hash(salt: str, target_id: str) -> float:
    digest = hashlib.sha256(f"{salt}:{target_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def chunk_of(target_ids) -> np.ndarray:
    """Chunk (int32, 0..15) of each target id."""
    return np.array([int(_unit_hash("chunk", t) * N_CHUNKS) for t in target_ids], dtype=np.int32)


def split_of(target_ids, fractions: dict[str, float] | None = None) -> np.ndarray:
    """Split name ("train", "validation", "test") of each target id (object array)."""
    fractions = fractions or SPLIT_FRACTIONS
    names = list(fractions)
    edges = np.cumsum([fractions[n] for n in names])
    if not np.isclose(edges[-1], 1.0):
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    u = np.array([_unit_hash("split", t) for t in target_ids], dtype=np.float64)
    idx = np.minimum(np.searchsorted(edges, u, side="right"), len(names) - 1)
    return np.array(names, dtype=object)[idx]


def shuffle_key(target_ids) -> np.ndarray:
    """A per-target uint64 used to order samples inside a split (a global shuffle, stable under additions)."""
    return np.array(
        [int.from_bytes(hashlib.sha256(f"order:{t}".encode()).digest()[:8], "big") for t in target_ids],
        dtype=np.uint64,
    )
