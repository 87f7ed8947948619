"""SDSS and DESI readers and the compiler on small hand-written files in the surveys' own formats."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table

from builders.catalogs import desi, sdss
from builders.catalogs.compile import compile_targets, match_groups, summary_table
from mantis_data.errors import InputDataError

SDSS_HEADER = "specObjID,ra,dec,z,zErr,zWarning,class,subClass,z_noqso,zErr_noqso,zWarning_noqso,z_person,class_person,plate,mjd,fiberID,survey,programname"


def _sdss_row(objid, ra, dec, z, zwarning=0, cls="GALAXY", z_noqso="0", z_person="0"):
    return f"{objid},{ra},{dec},{z},1e-5,{zwarning},{cls},,{z_noqso},1e-5,0,{z_person},0,266,51630,1,sdss,legacy"


def write_sdss(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([SDSS_HEADER, *rows]) + "\n")
    return path


def write_desi(path: Path, rows: list[dict], drop: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = Table(rows=[tuple(r.values()) for r in rows], names=list(rows[0]))
    if drop:
        t.remove_column(drop)
    hdu = fits.BinTableHDU(t, name="ZCATALOG")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return path


def desi_row(tid, ra, dec, z, zwarn=0, spectype="GALAXY", primary=True):
    return {"TARGETID": np.int64(tid), "TARGET_RA": ra, "TARGET_DEC": dec, "Z": z, "ZWARN": np.int64(zwarn),
            "SPECTYPE": spectype, "ZCAT_PRIMARY": primary}


def test_sdss_cuts_redshift_precedence_and_malformed_rows(tmp_path):
    path = write_sdss(
        tmp_path / "SpecObjAll.csv",
        [
            _sdss_row(101, 10.0, 5.0, 0.10),
            _sdss_row(102, 10.1, 5.0, 0.20, zwarning=4),
            _sdss_row(103, 10.2, 5.0, 0.30, cls="STAR"),
            _sdss_row(104, 10.3, 5.0, 0.40, z_noqso="0.41"),
            _sdss_row(105, 10.4, 5.0, 0.50, z_noqso="0.51", z_person="0.52"),
            _sdss_row(106, "abc", 5.0, 0.60),
            "107,10.6,5.0,0.7",  # too few fields
            _sdss_row(108, 10.7, 5.0, 0.8, z_person="-1"),
        ],
    )
    df = sdss.read(path)
    assert len(df) == 8 and list(df["source_row"]) == list(range(8))
    reasons = df.set_index("source_row")["reject_reason"]
    assert reasons[0] is None and reasons[1] == "zwarning" and reasons[2] == "class"
    assert reasons[5].startswith("unreadable_row") and "ra" in reasons[5]
    assert reasons[6].startswith("unreadable_row") and "fields" in reasons[6]
    z = df.set_index("source_row")["z"]
    assert z[3] == pytest.approx(0.41) and z[4] == pytest.approx(0.52) and z[7] == pytest.approx(0.8)
    assert df.loc[0, "target_id"] == "sdss-101"


def test_missing_column_names_survey_file_and_column(tmp_path):
    path = tmp_path / "SpecObjAll.csv"
    path.write_text("specObjID,ra,dec,z,class\n1,1,1,0.1,GALAXY\n")
    with pytest.raises(InputDataError, match=r"sdss: .*SpecObjAll.csv has no column 'zWarning'"):
        sdss.read(path)
    dpath = write_desi(tmp_path / "zall-pix-fuji.fits", [desi_row(1, 1.0, 1.0, 0.1)], drop="ZWARN")
    with pytest.raises(InputDataError, match=r"desi: .*zall-pix-fuji.fits has no column 'ZWARN'"):
        desi.read(dpath)


def test_desi_primary_zwarn_spectype(tmp_path):
    path = write_desi(
        tmp_path / "zall-pix-fuji.fits",
        [
            desi_row(1, 20.0, 1.0, 0.3),
            desi_row(1, 20.0, 1.0, 0.3, primary=False),
            desi_row(2, 20.1, 1.0, 0.4, zwarn=4),
            desi_row(3, 20.2, 1.0, 0.5, spectype="QSO"),
        ],
    )
    df = desi.read(path)
    assert list(df["reject_reason"]) == [None, "not_primary", "zwarning", "class"]


def test_compile_dedupes_across_surveys_and_audits_every_row(tmp_path):
    arcsec = 1 / 3600
    s = write_sdss(
        tmp_path / "sdss" / "SpecObjAll.csv",
        [
            _sdss_row(1, 30.0, 10.0, 0.30),                       # duplicate of desi 10 (0.5")
            _sdss_row(2, 31.0, 10.0, 0.40),                       # unique
            _sdss_row(3, 32.0, -31.0, 0.40),                      # below dec -30
            _sdss_row(4, 33.0, 10.0, 1.70),                       # z above the grid
            _sdss_row(5, 34.0, 10.0, 0.20),                       # duplicate of desi 11, z conflict
            _sdss_row(6, 35.0, 10.0, 0.20),                       # 1.5" from desi 12: not a duplicate
            _sdss_row(2, 36.0, 10.0, 0.50),                       # same specObjID again
        ],
    )
    d = write_desi(
        tmp_path / "desi" / "zall-pix-fuji.fits",
        [
            desi_row(10, 30.0 + 0.5 * arcsec / np.cos(np.radians(10)), 10.0, 0.301),
            desi_row(11, 34.0, 10.0 + 0.3 * arcsec, 0.50),
            desi_row(12, 35.0, 10.0 + 1.5 * arcsec, 0.20),
        ],
    )
    targets, audit = compile_targets({"sdss": s, "desi": d})
    assert len(audit) == 10
    reasons = dict(zip(audit["target_id"] + "@" + audit["source_row"].astype(str), audit["reject_reason"], strict=True))
    assert reasons["sdss-1@0"] == "duplicate_of:desi-10"
    assert reasons["sdss-5@4"] == "duplicate_of:desi-11"
    assert reasons["sdss-3@2"] == "dec_below_-30"
    assert reasons["sdss-4@3"] == "z_out_of_range"
    assert reasons["sdss-2@6"] == "duplicate_row"
    assert reasons["sdss-6@5"] is None and reasons["desi-12@2"] is None
    assert sorted(targets["target_id"]) == ["desi-10", "desi-11", "desi-12", "sdss-2", "sdss-6"]
    conflict = targets.set_index("target_id")["z_conflict"]
    assert conflict["desi-11"] and not conflict["desi-10"]
    table = summary_table(audit)
    assert (table["read"] == table.drop(columns=["read", "z_conflict"]).sum(axis=1)).all()
    assert table.loc["total", "read"] == 10 and table.loc["total", "accepted"] == 5


def test_match_groups_is_transitive_and_respects_radius():
    arcsec = 1 / 3600
    ra = np.array([10.0, 10.0, 10.0, 50.0])
    dec = np.array([0.0, 0.8 * arcsec, 1.6 * arcsec, 0.0])
    labels = match_groups(ra, dec, 1.0)
    assert labels[0] == labels[1] == labels[2] != labels[3]
    assert len(set(match_groups(ra, dec, 0.5))) == 4


def test_audit_keeps_input_rows_exactly_once(tmp_path):
    rows = [_sdss_row(i, 100 + i * 0.01, 20.0, 0.1 + i * 0.01, zwarning=i % 3 == 0) for i in range(50)]
    s = write_sdss(tmp_path / "SpecObjAll.csv", rows)
    _, audit = compile_targets({"sdss": s})
    assert sorted(audit["source_row"]) == list(range(50))
    assert audit["accepted"].sum() + audit["reject_reason"].notna().sum() == 50
    assert isinstance(audit, pd.DataFrame)
