"""Shared pieces of the survey readers: the unified table, cut bookkeeping, robust file reading.

Every reader returns one row per input row (none dropped) with the unified columns
``UNIFIED_COLUMNS`` plus its survey's raw quality columns, and ``reject_reason`` set (first failing
cut wins, in the order the reader applies them) or None for rows that pass the survey's cuts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from mantis_data.errors import InputDataError

from .ids import make_target_ids

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


def require_columns(available, required, survey: str, path: Path) -> None:
    """Raise InputDataError naming survey, file and the first missing required column."""
    missing = [c for c in required if c not in available]
    if missing:
        raise InputDataError(
            f"{survey}: {path} has no column {missing[0]!r} (missing: {', '.join(missing)}); "
            f"columns found: {', '.join(map(str, available))}"
        )


def reject(reason: pd.Series, mask, why) -> None:
    """Set ``why`` (a string or a per-row Series of strings) where ``mask`` holds and no reason is set yet."""
    mask = np.asarray(mask, dtype=bool) & reason.isna().to_numpy()
    if isinstance(why, pd.Series):
        reason[mask] = why[mask]
    else:
        reason[mask] = why


def to_number(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Parse strings as float64: (values with NaN for empty/unparseable, mask of non-empty unparseable)."""
    stripped = text.astype("string").str.strip()
    values = pd.to_numeric(stripped, errors="coerce").astype("float64")
    bad = (values.isna() & stripped.notna() & (stripped != "")).to_numpy(dtype=bool)
    return values, bad


def read_csv_strings(path: Path, survey: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a CSV as strings: (good rows with ``source_row``, malformed rows with ``source_row`` and ``why``).

    Rows with the wrong number of fields are not dropped: they come back in the second frame.
    """
    if not path.exists():
        raise InputDataError(f"{survey}: catalog file {path} does not exist")
    bad_rows: list[tuple[int, str]] = []

    def on_invalid(row) -> str:
        bad_rows.append((row.number, f"unreadable_row: expected {row.expected_columns} fields, got {row.actual_columns}"))
        return "skip"

    # Every column as string: parsing happens per column so that one bad value rejects one row.
    with open(path, "rb") as fh:
        header = fh.readline().decode("utf-8", "replace").strip().split(",")
    header = [h.strip() for h in header]
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header}, strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InputDataError(f"{survey}: cannot parse {path} as CSV: {exc}") from exc
    frame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)
    frame.columns = [c.strip() for c in frame.columns]
    # Line numbers (1-based, header = line 1) of the skipped rows give the data-row index of the others.
    bad_index = np.array(sorted(n - 2 for n, _ in bad_rows), dtype=np.int64)
    all_rows = np.arange(len(frame) + len(bad_index), dtype=np.int64)
    frame["source_row"] = np.setdiff1d(all_rows, bad_index, assume_unique=True)
    bad = pd.DataFrame(
        {"source_row": [n - 2 for n, _ in bad_rows], "why": [w for _, w in bad_rows]}, dtype=object
    )
    return frame, bad


def unified(
    survey: str,
    path: Path,
    objid,
    ra,
    dec,
    z,
    source_row,
    reason: pd.Series,
    extra: dict | None = None,
) -> pd.DataFrame:
    """Assemble the unified table of one survey, applying the coordinate and redshift sanity cuts."""
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    objid = pd.Series(objid, dtype=object).where(pd.notna(pd.Series(objid, dtype=object)), None)
    reject(reason, ~(np.isfinite(ra) & np.isfinite(dec) & (ra >= 0) & (ra < 360) & (np.abs(dec) <= 90)), "bad_coordinates")
    reject(reason, ~np.isfinite(z), "bad_redshift")
    ids = np.array([None] * len(objid), dtype=object)
    known = objid.notna().to_numpy()
    ids[known] = make_target_ids(survey, objid[known].astype(str))
    df = pd.DataFrame(
        {
            "target_id": ids,
            "survey": survey,
            "survey_objid": objid.astype(object).where(objid.notna(), None).map(lambda v: None if v is None else str(v)),
            "ra": ra,
            "dec": dec,
            "z": z,
            "source_file": str(path),
            "source_row": np.asarray(source_row, dtype=np.int64),
            "reject_reason": reason.astype(object).where(reason.notna(), None),
        }
    )
    for name, values in (extra or {}).items():
        df[name] = values.to_numpy() if isinstance(values, pd.Series) else values
    return df.sort_values("source_row", kind="stable").reset_index(drop=True)
