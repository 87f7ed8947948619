"""Shared pieces of the survey readers: file reading, column parsing, cut bookkeeping, the unified table.

Every reader returns one row per input row (none dropped) with the unified columns
``UNIFIED_COLUMNS`` plus its survey's raw quality columns, and ``reject_reason`` set (first failing
cut wins, in the order the reader applies them) or None for rows that pass the survey's cuts.

Where the code lives (every name stays importable from here):

- ``builders.catalogs.reading``: ``read_table`` and the file formats it reads, ``RawTable``,
  ``FITS_SUFFIXES``, ``COORDINATE_COLUMNS``, ``is_fits``, ``base_suffix`` and ``require_columns``.
- ``builders.catalogs.parsing``: ``text``, ``to_float``, ``to_number``, ``parse_float``, ``parse_text``,
  ``parse_id``, ``parse_core``, ``parse_angle``, ``parse_flag`` and ``shared_strings``.
- ``builders.catalogs.cuts``: ``new_reasons`` and ``reject``.
- ``builders.catalogs.unified_table``: ``UNIFIED_COLUMNS``, ``unified``, ``finish`` and ``constant``.
"""

from __future__ import annotations

from .cuts import new_reasons, reject  # noqa: F401
from .parsing import (  # noqa: F401
    _NUMBER_RE,
    _SEXAGESIMAL_RE,
    _is_arrow,
    parse_angle,
    parse_core,
    parse_flag,
    parse_float,
    parse_id,
    parse_text,
    shared_strings,
    text,
    to_float,
    to_number,
)
from .reading import (  # noqa: F401
    COORDINATE_COLUMNS,
    FITS_SUFFIXES,
    RawTable,
    _check_coordinates,
    _check_fits_size,
    _native,
    _open_text,
    _read_ascii,
    _read_csv,
    _read_fits,
    _resolve,
    _split_fields,
    base_suffix,
    is_fits,
    read_table,
    require_columns,
)
from .unified_table import (  # noqa: F401
    _ARROW_COLUMNS,
    UNIFIED_COLUMNS,
    _frame,
    _ids_arrow,
    _take,
    _unified_columns,
    constant,
    finish,
    unified,
)
