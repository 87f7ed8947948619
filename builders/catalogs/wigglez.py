"""WiggleZ final release (Drinkwater et al. 2010, 2018; Parkinson et al. 2012): ``wigglez/WiggleZ_final.fits``.

Layout assumed: a FITS binary table in HDU 1, one row per spectrum, with the release's column names
(WiggleZ_Name, RA, Dec, Redshift, Q, ...); RA and Dec in degrees. The same table as ASCII
(``WiggleZ_final.txt``) is read too.

Accept: Q >= 4 (4: several emission lines in agreement, 5: excellent, template quality).
Redshift: Redshift. Reasons, in order: ``unreadable_row``, ``q``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import finish, new_reasons, parse_core, parse_float, read_table, reject

SURVEY = "wigglez"
FILES = ("wigglez/WiggleZ_final.fits", "wigglez/WiggleZ_final.txt")
HDU = 1
COLUMNS = {"id": "WiggleZ_Name", "ra": "RA", "dec": "Dec", "z": "Redshift", "quality": "Q"}
REQUIRED = tuple(COLUMNS.values())
Q_MIN = 4
REASONS = ("unreadable_row", "q")
"""The reasons this reader gives, in the order it applies them."""


def read(path: str | Path) -> pd.DataFrame:
    """Every row of the WiggleZ final catalogue as the unified table (degrees, redshift), with reject reasons."""
    raw = read_table(Path(path), SURVEY, REQUIRED, hdu=HDU)
    reason = new_reasons(raw.n)
    objid, ra, dec, z = parse_core(raw, COLUMNS, reason)
    q = parse_float(raw, COLUMNS["quality"], reason)
    with np.errstate(invalid="ignore"):
        reject(reason, ~(q >= Q_MIN), "q")
    return finish(raw, objid, ra, dec, z, reason, extra={"Q": q})
