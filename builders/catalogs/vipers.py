"""VIPERS PDR2 (Scodeggio et al. 2018): the W1 and W4 spectroscopic catalogues.

Layout assumed: ``vipers/VIPERS_W1_SPECTRO_PDR2.fits`` and ``vipers/VIPERS_W4_SPECTRO_PDR2.fits``,
FITS binary tables in HDU 1 with the PDR2 column names (num, alpha, delta, selmag, errselmag, pointing,
quadrant, zspec, zflg, classFlag, tsr, ssr, ...); alpha and delta in degrees. The same tables as ASCII
(``.txt``) are read too. The compile reads W1, then W4.

Accept: 2 <= zflg < 5 and classFlag in {0, 1}, applied literally to the decimal flag: 2.x, 3.x and
4.x (secure redshifts; the decimal encodes agreement with the photometric redshift) pass; 0, 1.x, 9.x
and the AGN (1x.x) and serendipitous (2x.x) flags fail. classFlag 1 is a main-sample galaxy, 0 a
galaxy with no flag; -1 (stars) and 2 and above fail. Redshift: zspec.
Reasons, in order: ``unreadable_row``, ``zflg``, ``classflag``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import finish, new_reasons, parse_core, parse_float, read_table, reject

SURVEY = "vipers"
FILES = ("vipers/VIPERS_W1_SPECTRO_PDR2.fits", "vipers/VIPERS_W4_SPECTRO_PDR2.fits")
TEXT_FILES = tuple(f.replace(".fits", ".txt") for f in FILES)
HDU = 1
COLUMNS = {"id": "num", "ra": "alpha", "dec": "delta", "z": "zspec", "quality": "zflg", "class": "classFlag"}
REQUIRED = tuple(COLUMNS.values())
ZFLG_RANGE = (2.0, 5.0)
ACCEPTED_CLASSFLAG = (0.0, 1.0)
REASONS = ("unreadable_row", "zflg", "classflag")
"""The reasons this reader gives, in the order it applies them."""


def read(path: str | Path) -> pd.DataFrame:
    """Every row of one VIPERS PDR2 catalogue as the unified table (degrees, redshift), with reject reasons."""
    raw = read_table(Path(path), SURVEY, REQUIRED, hdu=HDU)
    reason = new_reasons(raw.n)
    objid, ra, dec, z = parse_core(raw, COLUMNS, reason, integer_id=True)
    zflg = parse_float(raw, COLUMNS["quality"], reason)
    class_flag = parse_float(raw, COLUMNS["class"], reason)
    with np.errstate(invalid="ignore"):
        reject(reason, ~((zflg >= ZFLG_RANGE[0]) & (zflg < ZFLG_RANGE[1])), "zflg")
    reject(reason, ~np.isin(class_flag, ACCEPTED_CLASSFLAG), "classflag")
    return finish(raw, objid, ra, dec, z, reason, extra={"zflg": zflg, "classFlag": class_flag})
