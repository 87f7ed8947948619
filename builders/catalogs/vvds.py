"""VVDS final release (Le Fevre et al. 2013): the WIDE, DEEP and UDEEP spectroscopic catalogues.

Layout assumed: one ASCII table per field and survey, as the CESAM VVDS database distributes them,
``vvds/cesam_vvds_sp<FIELD>_<WIDE|DEEP|UDEEP>.txt`` (e.g. cesam_vvds_spF10_WIDE.txt,
cesam_vvds_spF02_DEEP.txt, cesam_vvds_spCDFS_DEEP.txt, cesam_vvds_spF02_UDEEP.txt): ``#`` comment lines,
then one header line (NUM ALPHA DELTA MAGI Z ZFLAGS ...), then white-space-separated rows; ALPHA and
DELTA in degrees. The same tables as FITS (``.fits``, HDU 1) are read too. The compile reads WIDE,
then DEEP, then UDEEP files, each group in name order.

Accept: ZFLAGS in {3, 4}, applied literally: the units digit is the confidence (3: 95-100%, 4: 100%),
a tens digit marks a broad-line AGN (1x) or a secondary/serendipitous target (2x), and those (13, 14,
23, 24, ...) are rejected, as are flags 0, 1, 2, 9 and any fractional flag. Redshift: Z.
An object of the F02 photometric catalogue observed in DEEP and UDEEP keeps one NUM, so its second
row is a ``duplicate_row`` at the compile. Reasons, in order: ``unreadable_row``, ``zflags``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import finish, new_reasons, parse_core, parse_float, read_table, reject

SURVEY = "vvds"
FILES = (
    "vvds/cesam_vvds_sp*_WIDE*.txt",
    "vvds/cesam_vvds_sp*_DEEP*.txt",
    "vvds/cesam_vvds_sp*_UDEEP*.txt",
)
FITS_FILES = tuple(f.replace(".txt", ".fits") for f in FILES)
HDU = 1
COLUMNS = {"id": "NUM", "ra": "ALPHA", "dec": "DELTA", "z": "Z", "quality": "ZFLAGS"}
REQUIRED = tuple(COLUMNS.values())
ACCEPTED_ZFLAGS = (3.0, 4.0)
REASONS = ("unreadable_row", "zflags")
"""The reasons this reader gives, in the order it applies them."""


def read(path: str | Path) -> pd.DataFrame:
    """Every row of one VVDS catalogue file as the unified table (degrees, redshift), with reject reasons."""
    raw = read_table(Path(path), SURVEY, REQUIRED, hdu=HDU)
    reason = new_reasons(raw.n)
    objid, ra, dec, z = parse_core(raw, COLUMNS, reason, integer_id=True)
    zflags = parse_float(raw, COLUMNS["quality"], reason)
    reject(reason, ~np.isin(zflags, ACCEPTED_ZFLAGS), "zflags")
    return finish(raw, objid, ra, dec, z, reason, extra={"ZFLAGS": zflags})
