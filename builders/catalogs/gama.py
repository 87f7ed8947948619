"""GAMA DR4 (Driver et al. 2022; Liske et al. 2015): the spectroscopic catalogue ``gama/SpecObj.fits``.

Layout assumed: the SpecObj table (FITS, HDU 1), one row per spectrum, several spectra per galaxy,
with the DR4 column names (SPECID, SURVEY, SURVEY_CODE, RA, DEC, WMIN, WMAX, Z, NQ, PROB, FILENAME,
CATAID, GAMA_NAME, IC_FLAG, DIST, IS_SBEST, IS_BEST); RA and DEC in degrees. Read: ``COLUMNS`` and,
when present, IS_BEST and IS_SBEST.

Accept: one row per CATAID, then NQ >= 3. The row kept for a CATAID is the one with the highest NQ,
ties broken by IS_BEST, then IS_SBEST, then the first in the file; the other spectra of that CATAID
are ``not_primary``. Redshift: Z. Reasons, in order: ``unreadable_row`` (including a CATAID that is
not a positive integer), ``not_primary``, ``nq``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .common import finish, new_reasons, parse_flag, parse_float, parse_id, read_table, reject

SURVEY = "gama"
FILES = ("gama/SpecObj.fits",)
HDU = 1
COLUMNS = {"id": "CATAID", "ra": "RA", "dec": "DEC", "z": "Z", "quality": "NQ"}
REQUIRED = tuple(COLUMNS.values())
OPTIONAL = ("IS_BEST", "IS_SBEST")
NQ_MIN = 3
REASONS = ("unreadable_row", "not_primary", "nq")
"""The reasons this reader gives, in the order it applies them."""


def primary_rows(cataid: np.ndarray, nq: np.ndarray, is_best: np.ndarray, is_sbest: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Mask of the row kept per CATAID among ``candidate`` rows: highest NQ, then IS_BEST, IS_SBEST, first row."""
    idx = np.flatnonzero(candidate)
    order = np.lexsort((idx, ~is_sbest[idx], ~is_best[idx], -nq[idx], cataid[idx]))
    cat_sorted = cataid[idx][order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = cat_sorted[1:] != cat_sorted[:-1]
    keep = np.zeros(len(cataid), dtype=bool)
    keep[idx[order[first]]] = True
    return keep


def read(path: str | Path) -> pd.DataFrame:
    """Every row of a GAMA SpecObj file as the unified table (degrees, redshift), with reject reasons."""
    raw = read_table(Path(path), SURVEY, REQUIRED, OPTIONAL, hdu=HDU)
    reason = new_reasons(raw.n)
    objid = parse_id(raw, COLUMNS["id"], reason, integer=True)
    fits_int64 = pc.less_equal(pc.utf8_length(objid), 18).fill_null(False)  # longer ones cannot be CATAIDs
    cataid = pc.cast(pc.if_else(fits_int64, objid, pa.scalar(None, pa.string())), pa.int64())
    cataid = cataid.fill_null(0).to_numpy(zero_copy_only=False)
    reject(reason, cataid <= 0, "unreadable_row: CATAID is not a positive integer")
    ra = parse_float(raw, COLUMNS["ra"], reason)
    dec = parse_float(raw, COLUMNS["dec"], reason)
    z = parse_float(raw, COLUMNS["z"], reason)
    nq = parse_float(raw, COLUMNS["quality"], reason)
    is_best, is_sbest = parse_flag(raw, "IS_BEST"), parse_flag(raw, "IS_SBEST")
    readable = pd.isna(reason)
    keep = primary_rows(cataid, np.nan_to_num(nq, nan=-1.0), is_best, is_sbest, readable)
    reject(reason, readable & ~keep, "not_primary")
    with np.errstate(invalid="ignore"):
        reject(reason, ~(nq >= NQ_MIN), "nq")
    return finish(raw, objid, ra, dec, z, reason, extra={"NQ": nq, "IS_BEST": is_best})
