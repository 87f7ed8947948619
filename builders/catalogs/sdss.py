"""SDSS DR17: the SpecObjAll query output (CSV as CasJobs exports it, or FITS).

Layout: ``sdss/SpecObjAll.csv`` (one header line, comma-separated, SpecObjAll column names) or
``sdss/SpecObjAll.fits`` (HDU 1). Columns used: ``COLUMNS``; ``z_noqso``, ``z_person`` and ``legacy_target1`` are optional.
``legacy_target1`` (the SDSS-I/II PRIMTARGET bits, e.g. the Main Galaxy Sample's GALAXY 0x40) is kept in
the targets table (float64 here, NaN where empty; exact, the bits are below 2**32) for sub-population
benchmarks (``mantis_data.subpopulations``).

Accept: zWarning == 0 and class == GALAXY. Redshift: z_person if set, else z_noqso if set, else z
("set" = finite and > 0), as the paper describes (its appendix on SDSS).
Reasons, in order: ``unreadable_row`` (wrong field count, a value that is not a number, an empty
required value, a specObjID that is not an integer), ``zwarning``, ``class``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from .common import finish, new_reasons, parse_float, parse_id, parse_text, read_table, reject, shared_strings

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
OPTIONAL = ("z_noqso", "z_person", "legacy_target1")
QUALITY_COLUMNS = ("zWarning", "class")
REASONS = ("unreadable_row", "zwarning", "class")
"""The reasons this reader gives, in the order it applies them."""


def read(path: str | Path) -> pd.DataFrame:
    """Every row of an SDSS SpecObjAll file as the unified table (degrees, redshift), with reject reasons."""
    raw = read_table(Path(path), SURVEY, REQUIRED, OPTIONAL)
    reason = new_reasons(raw.n)
    parsed = {}
    for col in ("ra", "dec", "z", "zwarning", "z_noqso", "z_person"):
        name = COLUMNS[col]
        parsed[col] = parse_float(raw, name, reason, required=name in REQUIRED)
    objid = parse_id(raw, COLUMNS["id"], reason, integer=True)

    cls = parse_text(raw, COLUMNS["class"], upper=True)
    is_galaxy = pc.equal(cls, "GALAXY").fill_null(False).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        reject(reason, parsed["zwarning"] != 0, "zwarning")
    reject(reason, ~is_galaxy, "class")

    z = parsed["z"].copy()
    for alternative in ("z_noqso", "z_person"):  # later ones take precedence
        alt = parsed[alternative]
        with np.errstate(invalid="ignore"):
            use = np.isfinite(alt) & (alt > 0)
        z[use] = alt[use]

    return finish(
        raw,
        objid,
        parsed["ra"],
        parsed["dec"],
        z,
        reason,
        extra={
            "zWarning": parsed["zwarning"],
            "class": shared_strings(cls),
            "legacy_target1": parse_float(raw, "legacy_target1", reason, required=False),
        },
    )
