"""6dFGS DR3 (Jones et al. 2009): the redshift catalogue ``6dfgs/6dFGSzDR3.txt``.

Layout assumed: an ASCII table: ``#`` comment lines, one header line of column names, then one row
per spectrum, fields separated by tabs (TARGETNAME, TARGETID, RA, DEC, BJ, RF, Z, Z_ORIGIN, QUALITY,
...). RA and DEC are sexagesimal as in the distributed file ("00 00 02.58" hours, "-39 46 25.1"
degrees; colons are accepted too) or plain degrees ("0.010750"); each value is read as written.
A FITS version (``6dFGSzDR3.fits``, HDU 1, RA and DEC in degrees) is read too. Module name
``sixdfgs`` (a module name cannot start with a digit); the survey name is ``6dfgs``.

Accept: QUALITY in {3, 4} (1: unusable, 2: possible, 3: probable, 4: certain, 6: a star or other
Galactic object). Redshift: Z. Reasons, in order: ``unreadable_row`` (including a coordinate that is
neither degrees nor valid sexagesimal), ``quality``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import finish, new_reasons, parse_angle, parse_float, parse_id, read_table, reject

SURVEY = "6dfgs"
FILES = ("6dfgs/6dFGSzDR3.txt", "6dfgs/6dFGSzDR3.fits")
HDU = 1
COLUMNS = {"id": "TARGETNAME", "ra": "RA", "dec": "DEC", "z": "Z", "quality": "QUALITY"}
REQUIRED = tuple(COLUMNS.values())
ACCEPTED_QUALITY = (3.0, 4.0)
REASONS = ("unreadable_row", "quality")
"""The reasons this reader gives, in the order it applies them."""


def read(path: str | Path) -> pd.DataFrame:
    """Every row of the 6dFGS DR3 catalogue as the unified table (degrees, redshift), with reject reasons."""
    raw = read_table(Path(path), SURVEY, REQUIRED, hdu=HDU)
    reason = new_reasons(raw.n)
    objid = parse_id(raw, COLUMNS["id"], reason)
    ra = parse_angle(raw, COLUMNS["ra"], reason, hours=True)
    dec = parse_angle(raw, COLUMNS["dec"], reason, hours=False)
    z = parse_float(raw, COLUMNS["z"], reason)
    quality = parse_float(raw, COLUMNS["quality"], reason)
    reject(reason, ~np.isin(quality, ACCEPTED_QUALITY), "quality")
    return finish(raw, objid, ra, dec, z, reason, extra={"QUALITY": quality})
