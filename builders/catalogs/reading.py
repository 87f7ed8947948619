"""Reading one survey catalog file into a ``RawTable`` of its wanted columns, with errors naming file and column.

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
import pyarrow as pa
import pyarrow.csv as pacsv

from mantis_data.errors import InputDataError

FITS_SUFFIXES: tuple[str, ...] = (".fits", ".fit", ".fz", ".fits.gz", ".fit.gz")

COORDINATE_COLUMNS: frozenset[str] = frozenset({"ra", "dec", "target_ra", "target_dec", "alpha", "delta"})
"""Column names (lower case) of the survey readers' coordinates: in a FITS table they must be floating point."""


def require_columns(available, required, survey: str, path: Path) -> None:
    """Raise InputDataError naming survey, file and the first missing required column."""
    missing = [c for c in required if c not in available]
    if missing:
        raise InputDataError(
            f"{survey}: {path} has no column {missing[0]!r} (missing: {', '.join(missing)}); "
            f"columns found: {', '.join(map(str, available))}"
        )


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
