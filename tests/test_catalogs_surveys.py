"""DEEP2, GAMA, VVDS, VIPERS, 6dFGS and WiggleZ readers on tiny hand-written files, and all eight surveys
against the mock sky's planted truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from builders.catalogs import deep2, gama, sixdfgs, vipers, vvds, wigglez
from builders.catalogs.compile import (
    CATALOG_FILES,
    compile_targets,
    find_catalogs,
    match_groups,
    reason_kind,
    summary_table,
)
from builders.mock.catalogs import FILES, write_catalogs
from builders.mock.sky import MockSky
from mantis_data.errors import InputDataError

NAN = float("nan")


def write_fits(path: Path, columns: dict[str, list], extname: str | None = None) -> Path:
    """A FITS binary table in HDU 1 with the given columns (strings as fixed-width bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = []
    for name, values in columns.items():
        if isinstance(values[0], str):
            cols.append(fits.Column(name=name, format=f"{max(len(v) for v in values)}A", array=np.array(values, dtype="S")))
        elif isinstance(values[0], bool):
            cols.append(fits.Column(name=name, format="L", array=np.array(values, dtype=bool)))
        elif isinstance(values[0], int):
            cols.append(fits.Column(name=name, format="K", array=np.array(values, dtype=np.int64)))
        else:
            cols.append(fits.Column(name=name, format="D", array=np.array(values, dtype=np.float64)))
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name=extname)]).writeto(path, overwrite=True)
    return path


def reasons(df: pd.DataFrame) -> list:
    return df.sort_values("source_row")["reject_reason"].tolist()


# ------------------------------------------------------------------------------------------------ DEEP2


def test_deep2_quality_class_zbest_and_bad_values(tmp_path):
    path = write_fits(
        tmp_path / "zcat.deep2.dr4.fits",
        {
            "OBJNO": [11000001, 11000002, 11000003, 11000004, 11000005, 11000006, 11000007],
            "RA": [214.1, 214.2, 214.3, 214.4, NAN, 214.6, 214.7],
            "DEC": [52.1, 52.2, 52.3, 52.4, 52.5, 52.6, 52.7],
            "CLASS": ["GALAXY", "GALAXY", "STAR", "AGN", "GALAXY", "GALAXY", "GALAXY"],
            "Z": [0.91, 1.05, 0.0001, 1.2, 0.8, 0.7, 0.5],
            "ZBEST": [0.9, 1.05, 0.0001, 1.2, 0.8, NAN, 0.5],
            "ZQUALITY": [4, 2, -1, 4, 3, 3, 3],
        },
    )
    df = deep2.read(path)
    assert reasons(df) == [None, "zquality", "zquality", "class", "bad_coordinates", "bad_redshift", None]
    assert df.loc[0, "z"] == pytest.approx(0.9)  # ZBEST, not Z
    assert df.loc[0, "target_id"] == "deep2-11000001" and (df["survey"] == "deep2").all()
    assert list(df["ZQUALITY"])[:3] == [4, 2, -1]


def test_deep2_missing_column_names_survey_file_and_column(tmp_path):
    path = write_fits(tmp_path / "zcat.deep2.dr4.fits", {"OBJNO": [1], "RA": [1.0], "DEC": [1.0], "ZBEST": [0.5], "CLASS": ["GALAXY"]})
    with pytest.raises(InputDataError, match=r"deep2: .*zcat\.deep2\.dr4\.fits has no column 'ZQUALITY'"):
        deep2.read(path)


# ------------------------------------------------------------------------------------------------- GAMA


def test_gama_one_row_per_cataid_then_nq(tmp_path):
    path = write_fits(
        tmp_path / "SpecObj.fits",
        {
            "SPECID": ["a", "b", "c", "d", "e", "f", "g"],
            "RA": [180.0, 180.0, 180.0, 181.0, 182.0, 183.0, 184.0],
            "DEC": [0.5] * 7,
            "Z": [0.11, 0.11, 0.30, 0.2, 0.25, 0.3, 0.1],
            "NQ": [4, 4, 2, 2, 3, 4, 4],
            "CATAID": [100, 100, 100, 200, 300, 0, 400],
            "IS_SBEST": [True, True, False, True, True, True, True],
            "IS_BEST": [False, True, False, True, True, True, True],
        },
        extname="SPECOBJ",
    )
    df = gama.read(path)
    # CATAID 100: two NQ=4 spectra, IS_BEST picks the second; NQ=2 repeats are not primary either
    assert reasons(df) == ["not_primary", None, "not_primary", "nq", None, "unreadable_row: CATAID is not a positive integer", None]
    assert df.loc[1, "target_id"] == "gama-100"
    # without IS_BEST / IS_SBEST: the highest NQ wins, then the first row
    plain = write_fits(
        tmp_path / "plain" / "SpecObj.fits",
        {"CATAID": [7, 7, 7], "RA": [10.0, 10.0, 10.0], "DEC": [1.0, 1.0, 1.0], "Z": [0.1, 0.1, 0.1], "NQ": [3, 4, 4]},
    )
    assert reasons(gama.read(plain)) == ["not_primary", None, "not_primary"]
    with pytest.raises(InputDataError, match=r"gama: .*SpecObj\.fits has no column 'NQ'"):
        gama.read(write_fits(tmp_path / "bad" / "SpecObj.fits", {"CATAID": [1], "RA": [1.0], "DEC": [1.0], "Z": [0.1]}))


# ------------------------------------------------------------------------------------------------- VVDS

VVDS_HEADER = "# VVDS final release\n# columns: see below\nNUM ALPHA DELTA MAGI Z ZFLAGS\n"


def test_vvds_zflags_literal_and_unreadable_rows(tmp_path):
    path = tmp_path / "cesam_vvds_spF02_DEEP.txt"
    path.write_text(
        VVDS_HEADER
        + "020000001  36.500000  -4.500000  22.100  0.7312  4\n"
        + "020000002  36.510000  -4.510000  22.300  0.8120  3\n"
        + "020000003  36.520000  -4.520000  23.100  1.1000  2\n"
        + "020000004  36.530000  -4.530000  23.500  0.5000  9\n"
        + "020000005  36.540000  -4.540000  21.900  0.6000  24\n"
        + "020000006  36.550000  -4.550000  22.000  0.6500  14\n"
        + "020000007  36.560000  -4.560000  22.000  0.6500  3.5\n"
        + "\n"
        + "020000008  36.570000  -4.570000  22.000  0.6500\n"
        + "020000009  36.580000  -4.580000  22.000  *******  4\n"
        + "020000010  36.590000  -4.590000  22.000  0.9900  4\n"
    )
    df = vvds.read(path)
    got = reasons(df)
    assert got[:7] == [None, None, "zflags", "zflags", "zflags", "zflags", "zflags"]
    assert got[7] == "unreadable_row: expected 6 fields, got 5"
    assert got[8] == "unreadable_row: Z is not a number"
    assert got[9] is None and len(df) == 10  # the blank line is not a row
    assert df.loc[0, "target_id"] == "vvds-020000001" and df.loc[0, "ra"] == pytest.approx(36.5)


def test_vvds_several_files_number_rows_through_the_survey(tmp_path):
    folder = tmp_path / "in"
    (folder / "vvds").mkdir(parents=True)
    (folder / "vvds" / "cesam_vvds_spF02_UDEEP.txt").write_text(VVDS_HEADER + "020000009  36.5  -4.7  24.0  1.2  4\n")
    (folder / "vvds" / "cesam_vvds_spF02_DEEP.txt").write_text(
        VVDS_HEADER + "020000001  36.5  -4.5  22.0  0.7  4\n020000002  36.6  -4.5  22.0  0.8  2\n"
    )
    (folder / "vvds" / "cesam_vvds_spF10_WIDE.txt").write_text(VVDS_HEADER + "100000001  150.5  1.9  21.0  0.5  3\n")
    found = find_catalogs(folder)
    assert [p.name for p in found["vvds"]] == [
        "cesam_vvds_spF10_WIDE.txt", "cesam_vvds_spF02_DEEP.txt", "cesam_vvds_spF02_UDEEP.txt",
    ]
    targets, audit = compile_targets(found)
    assert list(audit["source_row"]) == [0, 1, 2, 3] and list(audit["file_row"]) == [0, 0, 1, 0]
    names = [p.name for p in found["vvds"]]
    assert [Path(p).name for p in audit["source_file"]] == [names[0], names[1], names[1], names[2]]
    assert not audit.duplicated(["source_file", "file_row"]).any()
    assert sorted(targets["target_id"]) == ["vvds-020000001", "vvds-020000009", "vvds-100000001"]
    with pytest.raises(InputDataError, match=r"vvds: .*cesam_vvds_spF10_WIDE\.txt has no column 'ZFLAGS'"):
        (folder / "vvds" / "cesam_vvds_spF10_WIDE.txt").write_text("NUM ALPHA DELTA Z\n1 1.0 1.0 0.5\n")
        compile_targets(find_catalogs(folder))


# ----------------------------------------------------------------------------------------------- VIPERS


def test_vipers_zflg_range_then_classflag(tmp_path):
    path = write_fits(
        tmp_path / "VIPERS_W1_SPECTRO_PDR2.fits",
        {
            "num": [101000001, 101000002, 101000003, 101000004, 101000005, 101000006, 101000007, 101000008, 101000009],
            "alpha": [34.0 + 0.01 * k for k in range(9)],
            "delta": [-5.0] * 9,
            "zspec": [0.6, 0.7, 0.8, 0.9, 1.0, 0.65, 0.75, 0.85, 0.95],
            "zflg": [2.0, 4.9, 5.0, 1.9, 24.5, 3.5, 3.2, 9.5, 12.5],
            "classFlag": [1, 0, 1, 1, 1, -1, 2, -1, 1],
        },
    )
    df = vipers.read(path)
    assert reasons(df) == [None, None, "zflg", "zflg", "zflg", "classflag", "classflag", "zflg", "zflg"]
    assert df.loc[0, "target_id"] == "vipers-101000001"
    with pytest.raises(InputDataError, match=r"vipers: .*VIPERS_W4_SPECTRO_PDR2\.fits has no column 'classFlag'"):
        vipers.read(write_fits(tmp_path / "VIPERS_W4_SPECTRO_PDR2.fits", {
            "num": [4], "alpha": [1.0], "delta": [1.0], "zspec": [0.5], "zflg": [3.0]}))


def test_vipers_as_ascii_reads_the_same(tmp_path):
    path = tmp_path / "VIPERS_W4_SPECTRO_PDR2.txt"
    path.write_text("num alpha delta zspec zflg classFlag\n401000001 331.0 1.5 0.7 3.5 1\n401000002 331.1 1.5 0.8 1.5 1\n")
    assert reasons(vipers.read(path)) == [None, "zflg"]


# ------------------------------------------------------------------------------------------------ 6dFGS

SIXDF_HEADER = "# 6dFGS DR3\nTARGETNAME\tTARGETID\tRA\tDEC\tZ\tQUALITY\n"


def test_6dfgs_sexagesimal_or_degrees_quality_and_bad_rows(tmp_path):
    path = tmp_path / "6dFGSzDR3.txt"
    path.write_text(
        SIXDF_HEADER
        + "g0000026-394625\t100001\t00 00 02.58\t-39 46 25.1\t0.05123\t4\n"
        + "g1230000+010000\t100002\t12:30:00.00\t+01:00:00.0\t0.02000\t3\n"
        + "g0100000-003000\t100003\t15.0\t-0.5\t0.03000\t4\n"
        + "g0200000-003000\t100004\t02 00 00.00\t-00 30 00.0\t0.04000\t2\n"
        + "g0300000-003000\t100005\t03 00 00.00\t-00 30 00.0\t0.00010\t6\n"
        + "g0400000-003000\t100006\t04 00 00.00\t-00 61 00.0\t0.04000\t4\n"
        + "g0500000-003000\t100007\t05 00 00.00\n"
        + "g0600000-003000\t100008\tsix\t-00 30 00.0\t0.04000\t4\n"
        + "g0700000-003000\t100009\t07 00 00.00\t-00 30 00.0\t0.04000\t1\n"
    )
    df = sixdfgs.read(path)
    got = reasons(df)
    assert got[:5] == [None, None, None, "quality", "quality"]
    assert got[5].startswith("unreadable_row: DEC is neither degrees nor sexagesimal")
    assert got[6] == "unreadable_row: expected 6 fields, got 3"
    assert got[7].startswith("unreadable_row: RA is neither degrees nor sexagesimal")
    assert got[8] == "quality"
    ra, dec = df["ra"].to_numpy(), df["dec"].to_numpy()
    assert ra[0] == pytest.approx(2.58 / 3600 * 15) and dec[0] == pytest.approx(-(39 + 46 / 60 + 25.1 / 3600))
    assert ra[1] == pytest.approx(187.5) and dec[1] == pytest.approx(1.0)
    assert ra[2] == pytest.approx(15.0) and dec[2] == pytest.approx(-0.5)  # plain numbers are degrees
    assert ra[3] == pytest.approx(30.0) and dec[3] == pytest.approx(-0.5)  # '-00 30' keeps its sign
    assert df.loc[0, "target_id"] == "6dfgs-g0000026-394625" and (df["survey"] == "6dfgs").all()
    # below -30: the survey accepts it, the compile does not
    targets, audit = compile_targets({"6dfgs": path})
    assert audit.loc[0, "reject_reason"] == "dec_below_-30" and len(targets) == 2


def test_6dfgs_missing_column_names_survey_file_and_column(tmp_path):
    path = tmp_path / "6dFGSzDR3.txt"
    path.write_text("TARGETNAME\tRA\tDEC\tZ\ng1\t00 00 01.0\t-01 00 00\t0.1\n")
    with pytest.raises(InputDataError, match=r"6dfgs: .*6dFGSzDR3\.txt has no column 'QUALITY'"):
        sixdfgs.read(path)


# ---------------------------------------------------------------------------------------------- WiggleZ


def test_wigglez_q_and_bad_coordinates(tmp_path):
    path = write_fits(
        tmp_path / "WiggleZ_final.fits",
        {
            "WiggleZ_Name": ["R09J093000001+001000", "R09J093000002+001000", "R09J093000003+001000", "R09J0930.0004"],
            "RA": [142.5, 142.6, NAN, 142.8],
            "Dec": [0.2, 0.2, 0.2, 95.0],
            "Redshift": [0.6, 0.55, 0.7, 0.4],
            "Q": [5, 3, 4, 4],
        },
    )
    df = wigglez.read(path)
    assert reasons(df) == [None, "q", "bad_coordinates", "bad_coordinates"]
    assert df.loc[3, "target_id"] == "wigglez-R09J0930_0004"  # no dots in target ids
    with pytest.raises(InputDataError, match=r"wigglez: .*WiggleZ_final\.fits has no column 'Redshift'"):
        wigglez.read(write_fits(tmp_path / "b" / "WiggleZ_final.fits", {"WiggleZ_Name": ["a"], "RA": [1.0], "Dec": [1.0], "Q": [4]}))


def test_every_survey_has_a_catalog_layout():
    assert set(CATALOG_FILES) == {"sdss", "desi", "deep2", "gama", "vvds", "vipers", "6dfgs", "wigglez"}


# ------------------------------------------------------------------------------------------ mock sky

MOCK_N = 1500
SURVEY_CUTS = {
    "sdss": {"zwarning", "class", "unreadable_row"},
    "desi": {"zwarning", "class", "not_primary"},
    "deep2": {"zquality", "class"},
    "gama": {"not_primary", "nq", "bad_coordinates"},
    "vvds": {"zflags", "unreadable_row"},
    "vipers": {"zflg", "classflag", "bad_redshift"},
    "6dfgs": {"quality", "unreadable_row"},
    "wigglez": {"q", "bad_coordinates"},
}


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mock8")
    paths = write_catalogs(MockSky(MOCK_N, seed=11), folder)
    targets, audit = compile_targets(find_catalogs(folder))
    truth = pd.read_parquet(paths["truth"])
    return paths, targets, audit, truth


def test_mock_writes_all_eight_surveys_in_their_layouts(mock):
    paths, _, audit, truth = mock
    assert set(FILES) <= set(paths)
    assert set(audit["survey"]) == set(SURVEY_CUTS)
    assert len(audit) == len(truth)
    # every file the mock wrote is one the compile read, and rows point back to their file and line
    assert {Path(p).resolve() for p in audit["source_file"]} == {paths[k].resolve() for k in FILES}
    merged = audit.merge(truth, left_on=["survey", "source_row"], right_on=["survey", "row"], validate="one_to_one",
                         suffixes=("", "_truth"))
    assert (merged["source_file"].map(lambda p: Path(p).relative_to(paths["truth"].parent).as_posix()) == merged["file"]).all()
    assert (merged["file_row"] == merged["file_row_truth"]).all()
    assert not audit.duplicated(["source_file", "file_row"]).any()
    with fits.open(paths["gama"]) as hdul:
        assert hdul[1].name == "SPECOBJ" and "IS_BEST" in hdul[1].columns.names
    text = paths["6dfgs"].read_text().splitlines()
    assert text[2].split("\t")[:4] == ["TARGETNAME", "TARGETID", "RA", "DEC"]
    assert len(text[3].split("\t")[2].split()) == 3  # sexagesimal, as distributed


def test_mock_counts_per_reason_match_the_planted_truth(mock):
    _, _, audit, truth = mock
    merged = audit.merge(truth, left_on=["survey", "source_row"], right_on=["survey", "row"], validate="one_to_one",
                         suffixes=("", "_truth"))
    got = reason_kind(merged["reject_reason"]).fillna("accepted").astype(object)
    want = merged["expected_reason"].replace("", "accepted").astype(object)
    for survey, part in merged.groupby("survey"):
        counts_got = got[part.index].value_counts().sort_index()
        counts_want = want[part.index].value_counts().sort_index()
        pd.testing.assert_series_equal(counts_got, counts_want, check_names=False, obj=survey)
        assert SURVEY_CUTS[survey] <= set(counts_want.index), (survey, counts_want.to_dict())
    assert (got == want).all()  # row by row, not only in total
    clean = merged["planted"] == ""
    np.testing.assert_allclose(merged.loc[clean, "z"], merged.loc[clean, "z_expected"])
    # targets below -30 and cross-survey duplicates (some with conflicting z) among the new surveys too
    assert {"6dfgs", "gama", "vvds"} <= set(merged.loc[merged["expected_reason"] == "dec_below_-30", "survey"])
    new = ~merged["survey"].isin(["sdss", "desi"])
    assert (new & (got == "duplicate_of")).sum() >= 5
    assert (merged["z_conflict"] & new).any() or (merged["z_conflict_truth"] & new).any()


def test_mock_audit_invariant_and_no_close_pairs(mock):
    _, targets, audit, _ = mock
    table = summary_table(audit)
    reasons_only = table.drop(columns=["read", "accepted", "z_conflict"])
    assert (table["read"] == table["accepted"] + reasons_only.sum(axis=1)).all()
    assert (audit["accepted"] == audit["reject_reason"].isna()).all()
    labels = match_groups(targets["ra"].to_numpy(), targets["dec"].to_numpy(), 1.0)
    assert len(np.unique(labels)) == len(targets)
    assert targets["target_id"].is_unique and not targets["target_id"].str.contains(r"\.").any()
