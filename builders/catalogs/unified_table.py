"""The unified table of one survey file: ``UNIFIED_COLUMNS`` plus the survey's raw quality columns.

Every reader returns one row per input row (none dropped) with the unified columns
``UNIFIED_COLUMNS`` plus its survey's raw quality columns, and ``reject_reason`` set (first failing
cut wins, in the order the reader applies them) or None for rows that pass the survey's cuts.
``unified`` and ``finish`` add the coordinate and redshift sanity cuts (``bad_coordinates``,
``bad_redshift``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .cuts import reject
from .ids import target_ids_arrow
from .parsing import text
from .reading import RawTable

UNIFIED_COLUMNS: tuple[str, ...] = (
    "target_id",
    "survey",
    "survey_objid",
    "ra",
    "dec",
    "z",
    "source_file",
    "source_row",
    "reject_reason",
)


def _ids_arrow(objid) -> pa.Array:
    if isinstance(objid, pa.Array | pa.ChunkedArray):
        return objid if pa.types.is_string(objid.type) else pc.cast(objid, pa.string())
    if isinstance(objid, pd.Series):
        objid = objid.to_numpy(dtype=object)
    arr = np.asarray(objid) if not isinstance(objid, list) else np.array(objid, dtype=object)
    if arr.dtype.kind in "iu":
        return pc.cast(pa.array(arr), pa.string())
    if arr.dtype.kind in "SU":
        return text(arr)
    return pa.array(
        [None if v is None or (isinstance(v, float) and v != v) or v is pd.NA else str(v) for v in arr],
        type=pa.string(),
    )


_ARROW_COLUMNS = ("target_id", "survey_objid")
"""Unified columns kept as Arrow strings until the DataFrame is made (pandas' ``str`` dtype, no Python objects)."""


def _take(values, index: np.ndarray):
    """Rows ``index`` of a numpy or Arrow column."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.take(pa.array(index))
    return values[index]


def _unified_columns(survey: str, objid, ra, dec, z, source_row, reason, extra: dict | None) -> dict:
    """The unified columns except the constant survey and file: numpy arrays, ids as Arrow strings."""
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    reason = reason.to_numpy(dtype=object).copy() if isinstance(reason, pd.Series) else np.asarray(reason, dtype=object)
    with np.errstate(invalid="ignore"):
        good_position = np.isfinite(ra) & np.isfinite(dec) & (ra >= 0) & (ra < 360) & (np.abs(dec) <= 90)
    reject(reason, ~good_position, "bad_coordinates")
    reject(reason, ~np.isfinite(z), "bad_redshift")
    ids = _ids_arrow(objid)
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    cols = {
        "target_id": target_ids_arrow(survey, ids),
        "survey_objid": ids,
        "ra": ra,
        "dec": dec,
        "z": z,
        "source_row": np.asarray(source_row, dtype=np.int64),
        "reject_reason": reason,
    }
    for name, values in (extra or {}).items():
        cols[name] = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    return cols


def constant(n: int, value) -> np.ndarray:
    """An object array of ``n`` references to one object (np.full would make n copies of a string)."""
    out = np.empty(n, dtype=object)
    out.fill(value)
    return out


def _frame(survey: str, path: Path, cols: dict) -> pd.DataFrame:
    """The unified DataFrame: ids in pandas' ``str`` dtype (missing: NaN), survey and source_file as object
    columns sharing one string, reject_reason and string quality columns as object (missing: None)."""
    n = len(cols["ra"])
    index = pd.RangeIndex(n)

    def obj(values) -> pd.Series:
        return pd.Series(values, index=index, dtype=object, copy=False)

    data = {
        "target_id": pd.Series(pd.array(cols["target_id"], dtype="str"), index=index, copy=False),
        "survey": obj(constant(n, survey)),
        "survey_objid": pd.Series(pd.array(cols["survey_objid"], dtype="str"), index=index, copy=False),
        "ra": cols["ra"],
        "dec": cols["dec"],
        "z": cols["z"],
        "source_file": obj(constant(n, str(path))),
        "source_row": cols["source_row"],
        "reject_reason": obj(cols["reject_reason"]),
    }
    for name, values in cols.items():
        if name not in data:
            data[name] = obj(values) if values.dtype.kind == "O" else values
    return pd.DataFrame(data, copy=False)


def unified(
    survey: str,
    path: Path,
    objid,
    ra,
    dec,
    z,
    source_row,
    reason,
    extra: dict | None = None,
) -> pd.DataFrame:
    """Assemble the unified table of one survey (degrees, redshift), applying the coordinate and redshift sanity cuts."""
    cols = _unified_columns(survey, objid, ra, dec, z, source_row, reason, extra)
    rows = cols["source_row"]
    if len(rows) > 1 and not (np.diff(rows) > 0).all():
        order = np.argsort(rows, kind="stable")
        cols = {k: _take(v, order) for k, v in cols.items()}
    return _frame(survey, path, cols)


def finish(
    raw: RawTable,
    objid,
    ra,
    dec,
    z,
    reason: np.ndarray,
    extra: dict | None = None,
) -> pd.DataFrame:
    """The unified table of one file: its readable rows (``raw.source_row``) plus its unsplittable rows, in file order."""
    good = _unified_columns(raw.survey, objid, ra, dec, z, raw.source_row, reason, extra)
    m = len(raw.malformed_rows)
    if m == 0:
        return _frame(raw.survey, raw.path, good)
    bad = _unified_columns(
        raw.survey, pa.nulls(m, pa.string()), np.full(m, np.nan), np.full(m, np.nan), np.full(m, np.nan),
        raw.malformed_rows, np.array(raw.malformed_why, dtype=object), None,
    )
    total = raw.n + m  # every data row of the file is either readable or not: positions 0 .. total-1
    merged = {}
    for name, values in good.items():
        if name in _ARROW_COLUMNS:
            where = np.empty(total, dtype=np.int64)  # position in good + bad of each file row
            where[raw.source_row] = np.arange(raw.n)
            where[raw.malformed_rows] = raw.n + np.arange(m)
            merged[name] = pa.concat_arrays([values, bad[name]]).take(pa.array(where))
            continue
        if name in bad:
            other = bad[name]
            dtype = object if object in (values.dtype, other.dtype) else np.result_type(values.dtype, other.dtype)
        elif values.dtype.kind in "iuf":
            other, dtype = np.full(m, np.nan), np.float64
        else:
            other, dtype = np.full(m, None, dtype=object), object
        out = np.empty(total, dtype=dtype)
        out[raw.source_row] = values
        out[raw.malformed_rows] = other
        merged[name] = out
    return _frame(raw.survey, raw.path, merged)
