"""SDSS DR17: the SpecObjAll query output (CSV as CasJobs exports it, or FITS).

Accept: zWarning == 0 and class == GALAXY. Redshift: z_person if set, else z_noqso if set, else z
("set" = finite and > 0), as the paper describes (its appendix on SDSS).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import read_csv_strings, reject, require_columns, to_number, unified

SURVEY = "sdss"
COLUMNS = {
    "id": "specObjID",
    "ra": "ra",
    "dec": "dec",
    "z": "z",
    "z_noqso": "z_noqso",
    "z_person": "z_person",
    "zwarning": "zWarning",
    "class": "class",
}
REQUIRED = ("specObjID", "ra", "dec", "z", "zWarning", "class")
OPTIONAL = ("z_noqso", "z_person")
QUALITY_COLUMNS = ("zWarning", "class")


def _read_frame(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    if path.suffix.lower() in (".fits", ".fit", ".fz"):
        from astropy.table import Table

        table = Table.read(path, hdu=1)
        frame = table.to_pandas().astype("string")
        frame["source_row"] = np.arange(len(frame), dtype=np.int64)
        return frame, pd.DataFrame({"source_row": [], "why": []}, dtype=object)
    return read_csv_strings(path, SURVEY)


def read(path: str | Path) -> pd.DataFrame:
    """Every row of an SDSS SpecObjAll file as the unified table, with reject reasons."""
    path = Path(path)
    frame, malformed = _read_frame(path)
    require_columns(frame.columns, REQUIRED, SURVEY, path)
    reason = pd.Series([None] * len(frame), dtype=object)

    objid_text = frame[COLUMNS["id"]].astype("string").str.strip()
    parsed = {}
    for col in ("ra", "dec", "z", "zwarning", "z_noqso", "z_person"):
        name = COLUMNS[col]
        if name not in frame:
            parsed[col] = pd.Series(np.nan, index=frame.index)
            continue
        values, bad = to_number(frame[name])
        parsed[col] = values
        reject(reason, bad, f"unreadable_row: {name} is not a number")
        if name in REQUIRED:
            reject(reason, values.isna().to_numpy(), f"unreadable_row: {name} is empty")
    bad_id = ~objid_text.str.fullmatch(r"-?\d+").fillna(False).to_numpy(dtype=bool)
    reject(reason, bad_id, "unreadable_row: specObjID is not an integer")

    cls = frame[COLUMNS["class"]].astype("string").str.strip().str.upper()
    reject(reason, (parsed["zwarning"] != 0).to_numpy(), "zwarning")
    reject(reason, (cls != "GALAXY").fillna(True).to_numpy(dtype=bool), "class")

    z = parsed["z"].to_numpy().copy()
    for alternative in ("z_noqso", "z_person"):  # later ones take precedence
        alt = parsed[alternative].to_numpy()
        use = np.isfinite(alt) & (alt > 0)
        z[use] = alt[use]

    good = unified(
        SURVEY,
        path,
        objid_text.where(~pd.Series(bad_id, index=frame.index), None),
        parsed["ra"],
        parsed["dec"],
        z,
        frame["source_row"],
        reason,
        extra={"zWarning": parsed["zwarning"], "class": cls.astype(object)},
    )
    if len(malformed) == 0:
        return good
    n = len(malformed)
    bad = unified(
        SURVEY,
        path,
        [None] * n,
        np.full(n, np.nan),
        np.full(n, np.nan),
        np.full(n, np.nan),
        malformed["source_row"],
        pd.Series(malformed["why"].to_list(), dtype=object),
        extra={"zWarning": np.full(n, np.nan), "class": [None] * n},
    )
    return pd.concat([good, bad], ignore_index=True).sort_values("source_row", kind="stable").reset_index(drop=True)
