"""DEEP2 DR4 (Newman et al. 2013): the redshift catalog ``deep2/zcat.deep2.dr4.fits``.

Layout assumed: a FITS binary table in HDU 1, one row per spectrum, with the DR4 column names
(OBJNO, RA, DEC, MAGB, MAGR, MAGI, ..., CLASS, SUBCLASS, Z, ZBEST, ZERR, ZQUALITY, ...); RA and DEC in
degrees. Only ``COLUMNS`` are read. An object observed twice appears twice under one OBJNO; the
compile keeps the first that passes (``duplicate_row``).

Accept: ZQUALITY >= 3 (3 = secure, 4 = very secure; stars have -1) and CLASS == GALAXY.
Redshift: ZBEST. Reasons, in order: ``unreadable_row``, ``zquality``, ``class``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from .common import (
    finish,
    new_reasons,
    parse_core,
    parse_float,
    parse_text,
    read_table,
    reject,
    shared_strings,
)

SURVEY = "deep2"
FILES = ("deep2/zcat.deep2.dr4.fits",)
HDU = 1
COLUMNS = {"id": "OBJNO", "ra": "RA", "dec": "DEC", "z": "ZBEST", "quality": "ZQUALITY", "class": "CLASS"}
REQUIRED = tuple(COLUMNS.values())
ZQUALITY_MIN = 3
REASONS = ("unreadable_row", "zquality", "class")
"""The reasons this reader gives, in the order it applies them."""


def read(path: str | Path) -> pd.DataFrame:
    """Every row of a DEEP2 DR4 zcat file as the unified table (degrees, redshift), with reject reasons."""
    raw = read_table(Path(path), SURVEY, REQUIRED, hdu=HDU)
    reason = new_reasons(raw.n)
    objid, ra, dec, z = parse_core(raw, COLUMNS, reason, integer_id=True)
    quality = parse_float(raw, COLUMNS["quality"], reason)
    cls = parse_text(raw, COLUMNS["class"], upper=True)
    with np.errstate(invalid="ignore"):
        reject(reason, ~(quality >= ZQUALITY_MIN), "zquality")
    reject(reason, ~pc.equal(cls, "GALAXY").fill_null(False).to_numpy(zero_copy_only=False), "class")
    return finish(raw, objid, ra, dec, z, reason, extra={"ZQUALITY": quality, "CLASS": shared_strings(cls)})
