"""DESI EDR: ``zall-pix-fuji.fits``, HDU ZCATALOG.

Accept: ZCAT_PRIMARY (one row per TARGETID), ZWARN == 0, SPECTYPE == GALAXY.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mantis_data.errors import InputDataError

from .common import reject, require_columns, unified

SURVEY = "desi"
HDU = "ZCATALOG"
REQUIRED = ("TARGETID", "TARGET_RA", "TARGET_DEC", "Z", "ZWARN", "SPECTYPE", "ZCAT_PRIMARY")


def read(path: str | Path) -> pd.DataFrame:
    """Every row of a DESI zall catalog as the unified table, with reject reasons."""
    from astropy.io import fits

    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{SURVEY}: catalog file {path} does not exist")
    try:
        with fits.open(path, memmap=True) as hdul:
            if HDU not in hdul:
                raise InputDataError(f"{SURVEY}: {path} has no HDU named {HDU!r} (HDUs: {[h.name for h in hdul]})")
            data = hdul[HDU].data
            names = list(data.columns.names)
            require_columns(names, REQUIRED, SURVEY, path)
            cols = {c: np.asarray(data[c]) for c in REQUIRED}
    except OSError as exc:
        raise InputDataError(f"{SURVEY}: cannot read {path} as FITS: {exc}") from exc
    n = len(cols["TARGETID"])
    reason = pd.Series([None] * n, dtype=object)
    spectype = pd.Series(cols["SPECTYPE"]).astype(str).str.strip().str.upper()
    reject(reason, ~cols["ZCAT_PRIMARY"].astype(bool), "not_primary")
    reject(reason, cols["ZWARN"] != 0, "zwarning")
    reject(reason, (spectype != "GALAXY").to_numpy(), "class")
    return unified(
        SURVEY,
        path,
        cols["TARGETID"].astype(np.int64).astype(str),
        cols["TARGET_RA"],
        cols["TARGET_DEC"],
        cols["Z"],
        np.arange(n),
        reason,
        extra={
            "ZWARN": cols["ZWARN"].astype(np.int64),
            "SPECTYPE": spectype.to_numpy(dtype=object),
            "ZCAT_PRIMARY": cols["ZCAT_PRIMARY"].astype(bool),
        },
    )
