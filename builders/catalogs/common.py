"""Shared pieces of the survey readers: file reading, column parsing, cut bookkeeping, the unified table.

Every reader returns one row per input row (none dropped) with the unified columns
``UNIFIED_COLUMNS`` plus its survey's raw quality columns, and ``reject_reason`` set (first failing
cut wins, in the order the reader applies them) or None for rows that pass the survey's cuts.

Files are read by ``read_table`` according to their suffix:

* ``.fits``, ``.fit``, ``.fz``, ``.fits.gz``: a FITS binary table (an HDU given by index or name), columns
  as numpy arrays (numbers stay numbers; NaN coordinates or redshifts are ``bad_coordinates`` /
  ``bad_redshift``, not unreadable rows).
* ``.csv`` (``.tsv``): comma- (tab-) separated with one header line, parsed by Arrow; every value
  read as text.
* anything else (``.txt``, ``.dat``, ...): an ASCII table: lines starting with ``#`` and
  blank lines are skipped, the first other line names the columns, fields are separated by tabs if the
  header has a tab, else by ``|`` or ``,`` if it has one, else by runs of white space.

In text files a row with the wrong number of fields, a value that is not a number where one is needed
and an empty required value make the row ``unreadable_row: <why>``; it is kept in the table, never
dropped. Column names are matched exactly, else ignoring case (FITS names are case-insensitive).

Any file may be gzipped (``<name>.gz``: read transparently) and may start with a UTF-8 byte-order
mark. A FITS file shorter than its headers say (truncated) and a coordinate column (``COORDINATE_COLUMNS``)
stored as integers are errors naming the file (and column), never silently wrong rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mantis_data.errors import InputDataError

from .ids import target_ids_arrow

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

FITS_SUFFIXES: tuple[str, ...] = (".fits", ".fit", ".fz", ".fits.gz", ".fit.gz")

COORDINATE_COLUMNS: frozenset[str] = frozenset({"ra", "dec", "target_ra", "target_dec", "alpha", "delta"})
"""Column names (lower case) of the survey readers' coordinates: in a FITS table they must be floating point."""

_NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_SEXAGESIMAL_RE = (
    r"^(?P<sign>[+-]?)\s*(?P<a>\d{1,3})(?:\s*[:hd]\s*|\s+)(?P<b>\d{1,2})(?:\s*[:m']\s*|\s+)"
    r"(?P<c>\d{1,2}(?:\.\d*)?)\s*[s\"]?$"
)


# ---------------------------------------------------------------------------------------------------
# Errors and reasons


def require_columns(available, required, survey: str, path: Path) -> None:
    """Raise InputDataError naming survey, file and the first missing required column."""
    missing = [c for c in required if c not in available]
    if missing:
        raise InputDataError(
            f"{survey}: {path} has no column {missing[0]!r} (missing: {', '.join(missing)}); "
            f"columns found: {', '.join(map(str, available))}"
        )


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


# ---------------------------------------------------------------------------------------------------
# Reading files


@dataclass
class RawTable:
    """The wanted columns of one catalog file as read, keyed by the survey's own column names.

    ``columns`` hold Arrow string arrays (text files) or numpy arrays (FITS) for the rows that could be
    split into fields; ``source_row`` is each such row's 0-based data-row index in the file; rows that
    could not be split are listed in ``malformed_rows`` (data-row index) with ``malformed_why``.
    """

    path: Path
    survey: str
    columns: dict[str, pa.Array | np.ndarray]
    source_row: np.ndarray
    malformed_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    malformed_why: list[str] = field(default_factory=list)
    found: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        """Number of readable (split) rows."""
        return len(self.source_row)

    def has(self, name: str) -> bool:
        """Whether the file has column ``name``."""
        return name in self.columns


def _resolve(available: list[str], wanted: tuple[str, ...]) -> dict[str, str]:
    """Map each wanted name to the file's name: exact match, else the unique case-insensitive match."""
    lower: dict[str, list[str]] = {}
    for a in available:
        lower.setdefault(a.lower(), []).append(a)
    out = {}
    for w in wanted:
        if w in available:
            out[w] = w
        elif len(lower.get(w.lower(), [])) == 1:
            out[w] = lower[w.lower()][0]
    return out


def is_fits(path: Path) -> bool:
    """Whether ``path`` names a FITS file (by its suffix)."""
    name = path.name.lower()
    return any(name.endswith(s) for s in FITS_SUFFIXES)


def read_table(
    path: str | Path,
    survey: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    hdu: int | str = 1,
) -> RawTable:
    """Read the ``required`` and ``optional`` columns of a FITS, CSV or ASCII catalog (see module doc)."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{survey}: catalog file {path} does not exist")
    if is_fits(path):
        return _read_fits(path, survey, required, optional, hdu)
    suffix = base_suffix(path)
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, survey, required, optional, delimiter="," if suffix == ".csv" else "\t")
    return _read_ascii(path, survey, required, optional)


def base_suffix(path: Path) -> str:
    """The file's suffix, lower case, ignoring a final ``.gz``: 'x.csv.gz' -> '.csv'."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def _open_text(path: Path):
    """A text handle (UTF-8, BOM stripped, bad bytes replaced) on a plain or gzipped file."""
    import gzip

    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace")
    return open(path, encoding="utf-8-sig", errors="replace")


def _check_fits_size(path: Path, hdul) -> None:
    """InputDataError when an uncompressed FITS file is shorter than its headers say (a truncated copy)."""
    if path.name.lower().endswith((".gz", ".fz")):
        return
    size = path.stat().st_size
    for k in range(len(hdul)):
        header = hdul[k].header
        naxis = int(header.get("NAXIS", 0))
        dims = [int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1)]
        need = abs(int(header.get("BITPIX", 8))) // 8 * (int(np.prod(dims)) if dims else 0)
        need += int(header.get("PCOUNT", 0) or 0)  # the heap of variable-length columns
        start = hdul.fileinfo(k)["datLoc"]
        if start + need > size:
            raise InputDataError(
                f"{path}: truncated FITS file ({size} bytes, HDU {k} needs {start + need}); "
                "download it again"
            )


def _check_coordinates(path: Path, survey: str, names_map: dict[str, str], table) -> None:
    for wanted, actual in names_map.items():
        if wanted.lower() in COORDINATE_COLUMNS:
            kind = np.dtype(table.columns[actual].dtype).kind
            if kind not in "f":
                raise InputDataError(
                    f"{survey}: {path}: coordinate column {actual!r} is stored as {table.columns[actual].dtype} "
                    "(integers), not floating-point degrees; the file is damaged or not the survey's release"
                )


def _native(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "iufb" and values.dtype.byteorder not in ("=", "|"):
        return values.astype(values.dtype.newbyteorder("="))
    return np.array(values, copy=True)


def _read_fits(path: Path, survey: str, required, optional, hdu) -> RawTable:
    import warnings

    from astropy.io import fits

    try:
        with warnings.catch_warnings(), fits.open(path, memmap=not path.name.lower().endswith(".gz")) as hdul:
            warnings.filterwarnings("ignore", message="File may have been truncated")  # _check_fits_size: an error
            try:
                table = hdul[hdu]
            except (KeyError, IndexError):
                raise InputDataError(
                    f"{survey}: {path} has no HDU {hdu!r} (HDUs: {[h.name for h in hdul]})"
                ) from None
            if not isinstance(table, fits.BinTableHDU | fits.TableHDU):
                raise InputDataError(f"{survey}: HDU {hdu!r} of {path} is not a table")
            _check_fits_size(path, hdul)
            names = list(table.columns.names)
            names_map = _resolve(names, tuple(required) + tuple(optional))
            require_columns(list(names_map), required, survey, path)
            _check_coordinates(path, survey, names_map, table)
            data = table.data
            n = 0 if data is None else len(data)
            cols = {}
            for w, actual in names_map.items():
                cols[w] = _native(data[actual]) if n else np.zeros(0)
    except (OSError, EOFError, TypeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputDataError(f"{survey}: cannot read {path} as FITS ({first}); is it truncated? download it again") from None
    return RawTable(path, survey, cols, np.arange(n, dtype=np.int64), found=tuple(names))


def _read_csv(path: Path, survey: str, required, optional, delimiter: str = ",") -> RawTable:
    try:
        with _open_text(path) as fh:
            header = [h.strip().strip('"').strip() for h in fh.readline().strip().split(delimiter)]
    except (OSError, EOFError) as exc:
        raise InputDataError(f"{survey}: cannot read {path}: {exc}") from None
    names_map = _resolve(header, tuple(required) + tuple(optional))
    require_columns(list(names_map), required, survey, path)
    include = list(dict.fromkeys(names_map.values()))

    def parse(use_threads: bool):
        bad_rows: list[tuple[int | None, str]] = []

        def on_invalid(row) -> str:
            bad_rows.append((row.number, f"unreadable_row: expected {row.expected_columns} fields, got {row.actual_columns}"))
            return "skip"

        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=use_threads, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                include_columns=include, column_types={h: pa.string() for h in include}, strings_can_be_null=True
            ),
        )
        return table, bad_rows

    try:
        table, bad_rows = parse(True)
        if any(n is None for n, _ in bad_rows):  # row numbers are only known to a single-threaded parse
            table, bad_rows = parse(False)
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        raise InputDataError(f"{survey}: cannot parse {path} as CSV: {exc}") from None
    # Line numbers (1-based, header = line 1) of the skipped rows give the data-row index of the others.
    bad_index = np.array(sorted(n - 2 for n, _ in bad_rows), dtype=np.int64)
    all_rows = np.arange(table.num_rows + len(bad_index), dtype=np.int64)
    good_rows = np.setdiff1d(all_rows, bad_index, assume_unique=True) if len(bad_index) else all_rows
    cols = {w: table.column(actual) for w, actual in names_map.items()}
    ordered = sorted(bad_rows, key=lambda b: b[0])
    return RawTable(
        path, survey, cols, good_rows, np.array([n - 2 for n, _ in ordered], dtype=np.int64),
        [w for _, w in ordered], found=tuple(header),
    )


def _split_fields(header: str) -> tuple[str | None, list[str]]:
    for delim in ("\t", "|", ","):
        if delim in header:
            return delim, [h.strip() for h in header.split(delim)]
    return None, header.split()


def _read_ascii(path: Path, survey: str, required, optional) -> RawTable:
    try:
        with _open_text(path) as fh:
            text = fh.read()
    except (OSError, EOFError) as exc:
        raise InputDataError(f"{survey}: cannot read {path}: {exc}") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputDataError(f"{survey}: {path} has no header line naming its columns")
    delim, header = _split_fields(lines[0].strip("\r\n"))
    names_map = _resolve(header, tuple(required) + tuple(optional))
    require_columns(list(names_map), required, survey, path)
    index = {w: header.index(a) for w, a in names_map.items()}
    ncol = len(header)
    good_rows: list[int] = []
    values: dict[str, list[str]] = {w: [] for w in names_map}
    bad_rows: list[int] = []
    bad_why: list[str] = []
    for k, line in enumerate(lines[1:]):
        fields = line.split() if delim is None else [f.strip() for f in line.rstrip("\r\n").split(delim)]
        if len(fields) != ncol:
            bad_rows.append(k)
            bad_why.append(f"unreadable_row: expected {ncol} fields, got {len(fields)}")
            continue
        good_rows.append(k)
        for w, i in index.items():
            values[w].append(fields[i])
    cols = {w: pa.array(v, type=pa.string()) for w, v in values.items()}
    return RawTable(
        path, survey, cols, np.array(good_rows, dtype=np.int64), np.array(bad_rows, dtype=np.int64), bad_why,
        found=tuple(header),
    )


# ---------------------------------------------------------------------------------------------------
# Parsing columns


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


# ---------------------------------------------------------------------------------------------------
# The unified table


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
