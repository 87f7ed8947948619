"""Target + cutouts (+ dust) -> one release sample, or a recorded rejection with a reason.

Quality rules (the paper's, DESIGN.md "Assemble"):
- a survey whose cutout failed (missing, unreadable, wrong shape) rejects the target: ``<survey>_<failure>``;
- Pan-STARRS: rejected when any band has more than 1% NaN pixels (``ps1_nan_fraction:<band>``),
  otherwise NaN -> 0 (the fraction per band is kept in ``ps1_nan_frac``);
- GALEX and unWISE: the same NaN rule (the paper saw none); GALEX pixels that are exactly 0 mean
  no coverage: recorded in ``galex_coverage``, never a rejection;
- unWISE all zero is no data: ``unwise_empty``;
- a pixel that is +-inf or beyond the survey's physical limit (mantis_data.bands.PIXEL_LIMITS) is
  corruption, not sky: ``<survey>_bad_values: <what> [<band>]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mantis_data.bands import SURVEYS
from mantis_data.cutouts.base import Stamps
from mantis_data.quality import MAX_NAN_FRACTION, check_survey, galex_coverage  # noqa: F401 (MAX_NAN_FRACTION: build.py)
from mantis_data.schema import IMAGE_FIELDS


@dataclass(frozen=True)
class Target:
    """One row of targets.parquet, with its split assignment."""

    target_id: str
    survey: str
    survey_objid: str
    ra: float
    dec: float
    z: float
    z_conflict: bool
    split: str
    chunk: int
    ebv_csfd: float | None = None
    ebv_planck: float | None = None


def assemble(target: Target, stamps: Stamps) -> tuple[dict | None, str | None]:
    """Build one sample from a target and its stamps: (sample, None) or (None, reject reason)."""
    sample: dict = {}
    ps1_fractions = np.full(len(SURVEYS["ps1"].bands), np.nan, np.float32)
    for survey in IMAGE_FIELDS:
        clean, fractions, why = check_survey(survey, getattr(stamps, survey), stamps.failures.get(survey))
        if why is not None:
            return None, why
        sample[survey] = clean
        if survey == "ps1":
            ps1_fractions = fractions
    zp = stamps.ps1_zp if stamps.ps1_zp is not None else np.full(len(SURVEYS["ps1"].bands), np.nan)
    sample.update(
        target_id=target.target_id,
        z=float(target.z),
        ra=float(target.ra),
        dec=float(target.dec),
        survey=target.survey,
        survey_objid=str(target.survey_objid),
        z_conflict=bool(target.z_conflict),
        ebv_csfd=target.ebv_csfd,
        ebv_planck=target.ebv_planck,
        ps1_nan_frac=ps1_fractions,
        ps1_zp=np.asarray(zp, dtype=np.float32),
        galex_coverage=np.float32(galex_coverage(sample["galex"])),
        split=target.split,
        chunk=int(target.chunk),
    )
    return sample, None
