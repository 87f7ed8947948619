"""Issue 11 item 3: no survey disappears silently from ``python -m builders catalogs``.

Each case changes a copy of a mock catalog folder the way a download or a user does; the command either
reads it to the same targets as the clean folder (gzip, .tsv, upper-case folder, BOM), or stops with
exit 2 and one line naming the file (and column), before writing anything.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from builders.__main__ import main
from builders.mock.catalogs import write_catalogs
from builders.mock.sky import MockSky


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """(mock catalog folder, its targets table) from a clean run."""
    root = tmp_path_factory.mktemp("cats")
    write_catalogs(MockSky(n_galaxies=160, seed=0), root / "in")
    assert main(["catalogs", "--in", str(root / "in"), "--out", str(root / "out")]) == 0
    targets = pd.read_parquet(root / "out" / "targets.parquet")
    assert set(targets["survey"]) == {"sdss", "desi", "deep2", "gama", "vvds", "vipers", "6dfgs", "wigglez"}
    return root / "in", targets


def _copy(clean, tmp_path) -> Path:
    folder = tmp_path / "in"
    shutil.copytree(clean[0], folder)
    return folder


def _run(folder: Path, tmp_path: Path, capsys, *extra) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["catalogs", "--in", str(folder), "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    if rc == 2:
        assert "\n" not in err and err.startswith("error: ")
        assert not (tmp_path / "out" / "targets.parquet").exists()
    return rc, err


def _same_targets(tmp_path, clean) -> None:
    got = pd.read_parquet(tmp_path / "out" / "targets.parquet").sort_values("target_id").reset_index(drop=True)
    want = clean[1].sort_values("target_id").reset_index(drop=True)
    drop = [c for c in got.columns if "file" in c]  # the file names differ (.gz, .tsv, SDSS/), nothing else
    pd.testing.assert_frame_equal(got.drop(columns=drop), want.drop(columns=drop))


def _gzip(path: Path) -> None:
    with gzip.open(path.with_name(path.name + ".gz"), "wb") as fh:
        fh.write(path.read_bytes())
    path.unlink()


def test_gzipped_csv_and_fits_are_read(clean, tmp_path, capsys):
    folder = _copy(clean, tmp_path)
    _gzip(folder / "sdss" / "SpecObjAll.csv")
    _gzip(folder / "desi" / "zall-pix-fuji.fits")
    assert _run(folder, tmp_path, capsys) == (0, "")
    _same_targets(tmp_path, clean)


def test_tsv_upper_case_folder_and_bom_are_read(clean, tmp_path, capsys):
    folder = _copy(clean, tmp_path)
    csv = folder / "sdss" / "SpecObjAll.csv"
    (folder / "sdss" / "SpecObjAll.tsv").write_bytes(b"\xef\xbb\xbf" + csv.read_bytes().replace(b",", b"\t"))
    csv.unlink()
    (folder / "sdss").rename(folder / "SDSS")
    assert _run(folder, tmp_path, capsys) == (0, "")
    _same_targets(tmp_path, clean)


@pytest.mark.parametrize("kind", ["header_only_csv", "zero_row_fits"])
def test_a_survey_without_rows_stops_the_run(clean, tmp_path, capsys, kind):
    folder = _copy(clean, tmp_path)
    if kind == "header_only_csv":
        path = folder / "sdss" / "SpecObjAll.csv"
        path.write_text(path.read_text().splitlines()[0] + "\n")
    else:
        path = folder / "desi" / "zall-pix-fuji.fits"
        with fits.open(path) as hdul:
            fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(hdul[1].data[:0], header=hdul[1].header)]).writeto(
                path, overwrite=True
            )
    rc, err = _run(folder, tmp_path, capsys)
    assert rc == 2 and str(path) in err and "no rows" in err


def test_truncated_fits_catalog_names_the_file(clean, tmp_path, capsys):
    folder = _copy(clean, tmp_path)
    path = folder / "desi" / "zall-pix-fuji.fits"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    rc, err = _run(folder, tmp_path, capsys)
    assert rc == 2 and str(path) in err and "truncated" in err


def test_integer_coordinates_name_file_and_column(clean, tmp_path, capsys):
    folder = _copy(clean, tmp_path)
    path = folder / "desi" / "zall-pix-fuji.fits"
    with fits.open(path) as hdul:
        cols = [
            fits.Column(c.name, "J", array=np.asarray(hdul[1].data[c.name]).astype(np.int32)) if c.name == "TARGET_RA" else c
            for c in hdul[1].columns
        ]
        table = fits.BinTableHDU.from_columns(cols, name="ZCATALOG")
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path, overwrite=True)
    rc, err = _run(folder, tmp_path, capsys)
    assert rc == 2 and str(path) in err and "'TARGET_RA'" in err and "int32" in err


def test_a_folder_with_nothing_readable_stops_before_any_work(clean, tmp_path, capsys):
    folder = _copy(clean, tmp_path)
    (folder / "sdss" / "SpecObjAll.csv").rename(folder / "sdss" / "SpecObjAll.csv.part")
    rc, err = _run(folder, tmp_path, capsys)
    assert rc == 2
    assert str(folder / "sdss") in err and "SpecObjAll.csv.part" in err and "SpecObjAll.csv[.gz]" in err


def test_every_survey_is_required_unless_chosen(clean, tmp_path, capsys):
    folder = _copy(clean, tmp_path)
    shutil.rmtree(folder / "wigglez")
    rc, err = _run(folder, tmp_path, capsys)
    assert rc == 2 and "wigglez" in err and "--surveys" in err
    rc, err = _run(folder, tmp_path, capsys, "--surveys", "sdss,desi,deep2,gama,vvds,vipers,6dfgs")
    assert rc == 0
    got = pd.read_parquet(tmp_path / "out" / "targets.parquet")
    assert "wigglez" not in set(got["survey"]) and len(got) == (clean[1]["survey"] != "wigglez").sum()
