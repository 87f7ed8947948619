"""DESI EDR: ``desi/zall-pix-fuji.fits``, HDU ZCATALOG.

Accept: ZCAT_PRIMARY (one row per TARGETID), ZWARN == 0, SPECTYPE == GALAXY.
Reasons, in order: ``not_primary``, ``zwarning``, ``class``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from .common import finish, new_reasons, parse_id, parse_text, read_table, reject, shared_strings

SURVEY = "desi"
HDU = "ZCATALOG"
COLUMNS = {
    "id": "TARGETID",
    "ra": "TARGET_RA",
    "dec": "TARGET_DEC",
    "z": "Z",
    "zwarning": "ZWARN",
    "class": "SPECTYPE",
    "primary": "ZCAT_PRIMARY",
}
REQUIRED = ("TARGETID", "TARGET_RA", "TARGET_DEC", "Z", "ZWARN", "SPECTYPE", "ZCAT_PRIMARY")
REASONS = ("unreadable_row", "not_primary", "zwarning", "class")
"""The reasons this reader gives, in the order it applies them."""


def read(path: str | Path) -> pd.DataFrame:
    """Every row of a DESI zall catalog as the unified table (degrees, redshift), with reject reasons."""
    raw = read_table(Path(path), SURVEY, REQUIRED, hdu=HDU)
    cols = raw.columns
    reason = new_reasons(raw.n)
    objid = parse_id(raw, "TARGETID", reason, integer=True)
    spectype = parse_text(raw, "SPECTYPE", upper=True)
    primary = np.asarray(cols["ZCAT_PRIMARY"]).astype(bool)
    zwarn = np.asarray(cols["ZWARN"])
    reject(reason, ~primary, "not_primary")
    reject(reason, zwarn != 0, "zwarning")
    reject(reason, ~pc.equal(spectype, "GALAXY").fill_null(False).to_numpy(zero_copy_only=False), "class")
    return finish(
        raw,
        objid,
        cols["TARGET_RA"],
        cols["TARGET_DEC"],
        cols["Z"],
        reason,
        extra={
            "ZWARN": zwarn.astype(np.int64),
            "SPECTYPE": shared_strings(spectype),
            "ZCAT_PRIMARY": primary,
        },
    )
