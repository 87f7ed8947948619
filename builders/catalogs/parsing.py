"""Parsing the columns of a ``RawTable``: numbers, text, ids, angles (degrees or sexagesimal) and flags.

A value that cannot be parsed (or an empty required one) sets the row's reject reason to
``unreadable_row: <why>``; the row is kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .cuts import reject
from .reading import RawTable

_NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_SEXAGESIMAL_RE = (
    r"^(?P<sign>[+-]?)\s*(?P<a>\d{1,3})(?:\s*[:hd]\s*|\s+)(?P<b>\d{1,2})(?:\s*[:m']\s*|\s+)"
    r"(?P<c>\d{1,2}(?:\.\d*)?)\s*[s\"]?$"
)


def _is_arrow(values) -> bool:
    return isinstance(values, pa.Array | pa.ChunkedArray)


def text(values) -> pa.Array:
    """Values as an Arrow string array, white space trimmed, empty strings as null."""
    if _is_arrow(values):
        arr = values
        if not pa.types.is_string(arr.type):
            arr = pc.cast(arr, pa.string())
    else:
        values = np.asarray(values)
        if values.dtype.kind == "S":
            try:
                arr = pc.cast(pa.array(values, type=pa.binary()), pa.string())
            except pa.ArrowInvalid:
                arr = pa.array(np.char.decode(values, "latin-1"), type=pa.string())
        elif values.dtype.kind == "U":
            arr = pa.array(values, type=pa.string())
        elif values.dtype.kind == "O":
            arr = pa.array([None if v is None or (isinstance(v, float) and v != v) else str(v) for v in values], type=pa.string())
        else:
            arr = pc.cast(pa.array(values), pa.string())
    arr = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


def to_float(values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse values as float64: (values with NaN where empty/unparseable, unparseable mask, empty mask).

    Numeric numpy input (FITS) passes through: nothing is unparseable or empty.
    """
    if not _is_arrow(values):
        arr = np.asarray(values)
        if arr.dtype.kind in "iufb":
            if np.ma.isMaskedArray(values):
                arr = np.ma.filled(values.astype(np.float64), np.nan)
            n = len(arr)
            return arr.astype(np.float64), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    t = text(values)
    empty = t.is_null().to_numpy(zero_copy_only=False)
    try:
        parsed = pc.cast(t, pa.float64())
        bad = np.zeros(len(t), dtype=bool)
    except pa.ArrowInvalid:
        ok = pc.match_substring_regex(t, _NUMBER_RE)
        parsed = pc.cast(pc.if_else(ok, t, pa.scalar(None, pa.string())), pa.float64())
        bad = ~ok.fill_null(True).to_numpy(zero_copy_only=False)
    out = parsed.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return out, bad, empty


def to_number(text_values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Parse strings as float64: (values with NaN for empty/unparseable, mask of non-empty unparseable)."""
    values, bad, _ = to_float(pa.array(text_values.astype(object).where(text_values.notna(), None).to_list(), type=pa.string()))
    return pd.Series(values, index=text_values.index), bad


def parse_float(raw: RawTable, name: str, reason: np.ndarray, required: bool = True) -> np.ndarray:
    """Column ``name`` as float64; unparseable (and, if required, empty) values make the row unreadable."""
    if name not in raw.columns:
        return np.full(raw.n, np.nan)
    values, bad, empty = to_float(raw.columns[name])
    reject(reason, bad, f"unreadable_row: {name} is not a number")
    if required:
        reject(reason, empty, f"unreadable_row: {name} is empty")
    return values


def parse_text(raw: RawTable, name: str, reason: np.ndarray | None = None, upper: bool = False) -> pa.Array:
    """Column ``name`` as trimmed Arrow strings (null if empty); with ``reason``, empty values make the row unreadable."""
    if name not in raw.columns:
        return pa.nulls(raw.n, pa.string())
    t = text(raw.columns[name])
    if upper:
        t = pc.utf8_upper(t)
    if reason is not None:
        reject(reason, t.is_null().to_numpy(zero_copy_only=False), f"unreadable_row: {name} is empty")
    return t


def parse_id(raw: RawTable, name: str, reason: np.ndarray, integer: bool = False) -> pa.Array:
    """Column ``name`` as native ids (Arrow strings, null where unreadable); bad ids make the row unreadable.

    With ``integer``, an id must be an integer (text ``-?\\d+`` or an integer FITS column).
    """
    values = raw.columns[name]
    if not _is_arrow(values) and np.asarray(values).dtype.kind in "iu":
        return pc.cast(pa.array(values), pa.string())
    if not _is_arrow(values) and np.asarray(values).dtype.kind == "f":
        arr = np.asarray(values)
        whole = np.isfinite(arr) & (arr == np.round(arr))
        reject(reason, ~whole, f"unreadable_row: {name} is not an integer")
        ids = pc.cast(pa.array(np.where(whole, arr, 0).astype(np.int64)), pa.string())
        return pc.if_else(pa.array(whole), ids, pa.scalar(None, pa.string()))
    t = text(values)
    empty = t.is_null().to_numpy(zero_copy_only=False)
    reject(reason, empty, f"unreadable_row: {name} is empty")
    if integer:
        ok = pc.match_substring_regex(t, r"^-?\d+$").fill_null(False)
        reject(reason, ~ok.to_numpy(zero_copy_only=False), f"unreadable_row: {name} is not an integer")
        t = pc.if_else(ok, t, pa.scalar(None, pa.string()))
    return t


def parse_core(
    raw: RawTable, columns: dict[str, str], reason: np.ndarray, integer_id: bool = False
) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    """The id, ra, dec (deg) and redshift columns named by ``columns["id"|"ra"|"dec"|"z"]``, parsed in that order."""
    objid = parse_id(raw, columns["id"], reason, integer=integer_id)
    ra = parse_float(raw, columns["ra"], reason)
    dec = parse_float(raw, columns["dec"], reason)
    z = parse_float(raw, columns["z"], reason)
    return objid, ra, dec, z


def parse_angle(raw: RawTable, name: str, reason: np.ndarray, hours: bool) -> np.ndarray:
    """Column ``name`` as degrees: a number is degrees, sexagesimal text ('h m s' if ``hours``, else 'd m s') is converted.

    Sexagesimal fields may be separated by spaces or colons; minutes and seconds must be < 60.
    Anything else makes the row unreadable.
    """
    values = raw.columns[name]
    if not _is_arrow(values) and np.asarray(values).dtype.kind in "iufb":
        return np.asarray(values, dtype=np.float64)
    t = text(values)
    n = len(t)
    empty = t.is_null().to_numpy(zero_copy_only=False)
    is_number = pc.match_substring_regex(t, _NUMBER_RE).fill_null(False)
    out = pc.cast(pc.if_else(is_number, t, pa.scalar(None, pa.string())), pa.float64()).to_numpy(zero_copy_only=False)
    out = np.array(out, dtype=np.float64)
    parts = pc.extract_regex(t, _SEXAGESIMAL_RE)  # null where it does not match
    sexa = parts.is_valid().to_numpy(zero_copy_only=False) & ~is_number.to_numpy(zero_copy_only=False)
    if sexa.any():
        a = pc.cast(pc.struct_field(parts, "a"), pa.float64()).to_numpy(zero_copy_only=False)
        b = pc.cast(pc.struct_field(parts, "b"), pa.float64()).to_numpy(zero_copy_only=False)
        c = pc.cast(pc.struct_field(parts, "c"), pa.float64()).to_numpy(zero_copy_only=False)
        neg = pc.equal(pc.struct_field(parts, "sign"), "-").fill_null(False).to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            valid = sexa & (b < 60) & (c < 60)
            value = (a + b / 60.0 + c / 3600.0) * (15.0 if hours else 1.0)
        out[valid] = np.where(neg, -value, value)[valid]
        sexa_bad = sexa & ~valid
    else:
        sexa_bad = np.zeros(n, dtype=bool)
    unparsed = ~empty & ~is_number.to_numpy(zero_copy_only=False) & (~sexa | sexa_bad)
    unit = "h m s" if hours else "d m s"
    reject(reason, unparsed, f"unreadable_row: {name} is neither degrees nor sexagesimal ({unit})")
    reject(reason, empty, f"unreadable_row: {name} is empty")
    return out


def shared_strings(values: pa.Array) -> np.ndarray:
    """An Arrow string array as an object array whose equal values share one Python string (None for null)."""
    if len(values) == 0:
        return np.zeros(0, dtype=object)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    labels = np.append(encoded.dictionary.to_numpy(zero_copy_only=False).astype(object), None)
    index = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy(zero_copy_only=False)
    return labels[index]


def parse_flag(raw: RawTable, name: str) -> np.ndarray:
    """An optional true/false column as bool (False where absent, empty or not a flag): numbers != 0, or T/TRUE/Y/YES."""
    if name not in raw.columns:
        return np.zeros(raw.n, dtype=bool)
    values = raw.columns[name]
    if not _is_arrow(values) and np.asarray(values).dtype.kind in "iufb":
        arr = np.asarray(values)
        return (arr != 0) & ~np.isnan(arr) if arr.dtype.kind == "f" else arr != 0
    t = pc.utf8_upper(text(values))
    truthy = pc.is_in(t, value_set=pa.array(["T", "TRUE", "Y", "YES"]))
    number, bad, empty = to_float(t)
    with np.errstate(invalid="ignore"):
        return truthy.fill_null(False).to_numpy(zero_copy_only=False) | (~bad & ~empty & (number != 0) & ~np.isnan(number))
