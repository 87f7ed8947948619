"""Exact Shapley values of a value function over a few players (bands or surveys), and MM-SHAP.

A coalition ``S`` is an integer bit mask over the players (bit ``j`` set: player ``j`` present). With
``n`` players, ``coalition_matrix(n)[m]`` is the presence row of coalition ``m`` (``2**n`` rows), and
the Shapley value of player ``j`` is

    phi_j = sum over S not containing j of |S|! (n - |S| - 1)! / n!  * (V(S + j) - V(S)),

computed here from the table of all ``2**n`` values ``V``. The values satisfy efficiency exactly:
``sum_j phi_j = V(all) - V(none)``.

``coalition_values`` evaluates ``V`` for an image model: a player's channels take the original image
where the player is present and the baseline image where not, and the composed inputs of many coalitions
go through the value function in a few large batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "coalition_matrix",
    "coalition_values",
    "mm_shap",
    "shapley_from_values",
    "shapley_weights",
]


def coalition_matrix(n: int) -> np.ndarray:
    """(2**n, n) bool: row ``m`` is the coalition with bit mask ``m`` (column ``j`` = bit ``j``)."""
    if not 1 <= n <= 20:
        raise ValueError(f"exact Shapley needs 1 to 20 players, not {n}")
    m = np.arange(2**n, dtype=np.int64)[:, None]
    return ((m >> np.arange(n, dtype=np.int64)[None, :]) & 1).astype(bool)


def shapley_weights(n: int) -> np.ndarray:
    """(n,) float64: the weight |S|! (n - |S| - 1)! / n! of a coalition of size |S| = 0 .. n-1."""
    return np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)])


def shapley_from_values(values: np.ndarray, n: int) -> np.ndarray:
    """Exact Shapley values (..., n) from the values of all coalitions (..., 2**n) in bit-mask order (float64)."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape[-1] != 2**n:
        raise ValueError(f"expected {2**n} coalition values in the last axis, got {v.shape[-1]}")
    masks = np.arange(2**n, dtype=np.int64)
    size = coalition_matrix(n).sum(axis=1)
    w = shapley_weights(n)
    phi = np.empty(v.shape[:-1] + (n,), dtype=np.float64)
    for j in range(n):
        without = masks[(masks >> j) & 1 == 0]
        phi[..., j] = ((v[..., without | (1 << j)] - v[..., without]) * w[size[without]]).sum(axis=-1)
    return phi


def mm_shap(phi: np.ndarray) -> np.ndarray:
    """MM-SHAP (Parcalabescu & Frank 2022): ``|phi_j| / sum_k |phi_k|`` along the last axis (0 where all are 0)."""
    a = np.abs(np.asarray(phi, dtype=np.float64))
    total = a.sum(axis=-1, keepdims=True)
    return np.divide(a, total, out=np.zeros_like(a), where=total > 0)


def coalition_values(
    value_fn: Callable[[dict], np.ndarray],
    original: Mapping[str, torch.Tensor],  # noqa: F821
    baseline: Mapping[str, torch.Tensor],  # noqa: F821
    players: Mapping[str, Sequence[int]],
    coalitions: np.ndarray,
    batch_size: int = 128,
    extra: Mapping[str, torch.Tensor] | None = None,  # noqa: F821
) -> np.ndarray:
    """``V`` of each coalition (K,) float64 for one galaxy.

    original, baseline: the galaxy's inputs, name -> tensor (C, H, W), the same shapes.
    players: name -> the player index of each of its C channels (-1: always original).
    coalitions: (K, n_players) bool presence rows.
    value_fn: called with a dict name -> (k, C, H, W) of composed inputs (plus ``extra`` entries, each
        repeated k times along a new first axis) and returns k values.
    Coalitions are evaluated ``batch_size`` at a time.
    """
    import torch

    coalitions = np.asarray(coalitions, dtype=bool)
    out = np.empty(len(coalitions), dtype=np.float64)
    chan_masks = {}
    for name, idx in players.items():
        idx = np.asarray(idx, dtype=np.int64)
        present = np.ones((len(coalitions), len(idx)), dtype=bool)
        sel = idx >= 0
        present[:, sel] = coalitions[:, idx[sel]]
        chan_masks[name] = torch.from_numpy(present)
    for start in range(0, len(coalitions), batch_size):
        stop = min(start + batch_size, len(coalitions))
        k = stop - start
        batch = {}
        for name, x in original.items():
            m = chan_masks[name][start:stop].to(x.device)[:, :, None, None]
            batch[name] = torch.where(m, x.unsqueeze(0), baseline[name].unsqueeze(0))
        for name, x in (extra or {}).items():
            batch[name] = x.unsqueeze(0).expand(k, *x.shape)
        out[start:stop] = np.asarray(value_fn(batch), dtype=np.float64).reshape(k)
    return out
