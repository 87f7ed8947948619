"""Cut bookkeeping of the survey readers: one reject reason per row, set by the first cut that fails.

A reader starts with ``new_reasons`` (all None) and applies its cuts in order with ``reject``, which only
sets a reason where none is set yet: the first failing cut wins, and rows left None pass the survey's cuts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def new_reasons(n: int) -> np.ndarray:
    """An object array of ``n`` reject reasons, all None (not rejected yet)."""
    return np.full(n, None, dtype=object)


def reject(reason: pd.Series | np.ndarray, mask, why) -> None:
    """Set ``why`` (a string, or per-row strings) where ``mask`` holds and no reason is set yet (in place)."""
    values = reason.to_numpy(dtype=object) if isinstance(reason, pd.Series) else reason
    mask = np.asarray(mask, dtype=bool) & pd.isna(values)
    if not mask.any():
        return
    if isinstance(why, pd.Series | np.ndarray | list):
        why = np.asarray(why.to_numpy(dtype=object) if isinstance(why, pd.Series) else why, dtype=object)
        chosen = why[mask]
    else:
        chosen = why
    if isinstance(reason, pd.Series):
        reason[mask] = chosen
    else:
        reason[mask] = chosen
