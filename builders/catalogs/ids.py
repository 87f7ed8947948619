"""Stable target identifiers: ``<survey>-<native id>``, safe as WebDataset keys (no dots, no slashes)."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_UNSAFE_PATTERN = r"[^A-Za-z0-9_+-]"
_UNSAFE = re.compile(_UNSAFE_PATTERN)


def make_target_id(survey: str, survey_objid) -> str:
    """The target id of one spectroscopic object: survey name, '-', native id with unsafe characters as '_'."""
    return f"{survey}-{_UNSAFE.sub('_', str(survey_objid).strip())}"


def target_ids_arrow(survey: str, survey_objids: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Vectorised ``make_target_id`` over an Arrow array (strings or integers); null ids stay null."""
    if not pa.types.is_string(survey_objids.type) and not pa.types.is_large_string(survey_objids.type):
        survey_objids = pc.cast(survey_objids, pa.string())
    if pc.any(pc.match_substring_regex(survey_objids, _UNSAFE_PATTERN)).as_py():  # else nothing to trim or replace
        survey_objids = pc.replace_substring_regex(pc.utf8_trim_whitespace(survey_objids), _UNSAFE_PATTERN, "_")
    return pc.binary_join_element_wise(pa.scalar(f"{survey}-"), survey_objids, "")


def make_target_ids(survey: str, survey_objids) -> np.ndarray:
    """Vectorised ``make_target_id`` over native ids (sequence, numpy or Arrow array): object array of str.

    None (or null) ids give None.
    """
    if isinstance(survey_objids, pa.Array | pa.ChunkedArray):
        arr = survey_objids
    else:
        values = np.asarray(survey_objids, dtype=object) if not isinstance(survey_objids, np.ndarray) else survey_objids
        if values.dtype.kind in "iu":
            arr = pa.array(values)
        else:
            arr = pa.array([None if v is None else str(v) for v in values.astype(object)], type=pa.string())
    out = target_ids_arrow(survey, arr)
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks()
    return out.to_numpy(zero_copy_only=False).astype(object, copy=False)
