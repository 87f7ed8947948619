"""LocalFitsSource over a mock cutout cache, and the FITS response parsers on good and broken input."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from astropy.io import fits

from builders.catalogs.ids import make_target_id
from builders.mock.cutouts import render_legacy, render_ps1, write_cutouts
from builders.mock.sky import MockSky
from mantis_data.bands import SURVEYS, ps1_zero_point
from mantis_data.cutouts.base import CutoutSource, Stamps
from mantis_data.cutouts.fits import (
    CutoutError,
    CutoutShapeError,
    read_legacy_cube,
    read_ps1_cutout,
    wcs_centre_offset_pixels,
)
from mantis_data.cutouts.layout import cutout_path, target_paths
from mantis_data.cutouts.local import LocalFitsSource
from mantis_data.errors import InputDataError

PS1_BANDS = SURVEYS["ps1"].bands


@pytest.fixture(scope="module")
def sky() -> MockSky:
    return MockSky(300, seed=11)


@pytest.fixture(scope="module")
def cache(sky, tmp_path_factory):
    """A cutout cache for every galaxy of the sky (targets are the galaxies, ids like the SDSS reader's)."""
    root = tmp_path_factory.mktemp("cutouts")
    targets = pa.table(
        {
            "target_id": [make_target_id("sdss", 299489677444933632 + (g << 38)) for g in range(sky.n)],
            "ra": sky.ra,
            "dec": sky.dec,
        }
    )
    result = write_cutouts(sky, targets, root, progress=False)
    return root, targets, result


def test_write_cutouts_counts_and_resume(sky, cache):
    root, targets, result = cache
    truth = result["truth"].to_pandas()
    n_ps1 = int(truth.ps1_covered.sum())
    assert result["n_targets"] == sky.n
    assert result["ps1_not_covered"] == sky.n - n_ps1 == int((sky.dec < -30).sum() + sky.ps1_missing.sum())
    assert result["files_written"] == 5 * n_ps1 + 2 * sky.n and result["files_skipped"] == 0
    assert not list(root.rglob("*.tmp*"))
    again = write_cutouts(sky, targets.to_pandas(), root, progress=False)  # a DataFrame works too
    assert again["files_written"] == 0 and again["files_skipped"] == result["files_written"]
    assert again["truth"].equals(result["truth"])


def test_cutout_truth_rates(sky, cache):
    truth = cache[2]["truth"].to_pandas()
    north = int((sky.dec >= -30).sum())
    assert int(sky.ps1_missing.sum()) == round(0.015 * north)
    assert (truth.ps1_corrupt_band != "").sum() == int((sky.ps1_corrupt_band >= 0).sum()) == max(2, round(0.01 * north))
    assert (truth.ps1_nan == "small").sum() == round(0.05 * north)
    assert (truth.ps1_nan == "large").sum() == round(0.04 * north)
    assert (truth.expect_reject == "ps1_nan").sum() == (truth.ps1_nan == "large").sum()
    assert (truth[truth.ps1_nan == "small"].ps1_nan_frac_max < 0.01).all()
    assert (~truth.galex_covered).sum() > 10


def test_local_source_round_trip(sky, cache):
    root, targets, result = cache
    truth = result["truth"].to_pandas()
    src: CutoutSource = LocalFitsSource(root)  # satisfies the protocol (checked statically)
    for row in truth.itertuples():
        st = src.get(row.target_id, row.ra, row.dec)
        assert isinstance(st, Stamps) and st.target_id == row.target_id
        expected = row.expect_ps1_failure
        got = st.failures.get("ps1", "")
        assert got.split(":")[0] == expected, (row.target_id, got, expected)
        if expected == "unreadable":
            assert got.endswith(f"[{row.ps1_corrupt_band}]") and "truncated" in got
        assert set(st.failures) <= {"ps1"}
        for s in ("galex", "unwise"):
            cube = getattr(st, s)
            assert cube.shape == SURVEYS[s].shape and cube.dtype == np.float32
            assert not np.isnan(cube).any()
        assert (st.galex == 0).all() == (not row.galex_covered)
        if expected:
            assert st.ps1 is None and st.ps1_zp is None
            continue
        assert st.ps1.shape == SURVEYS["ps1"].shape and st.ps1.dtype == np.float32
        np.testing.assert_allclose(np.isnan(st.ps1).mean(axis=(1, 2)), row.ps1_nan_frac)
        exps = [float(sky.ps1_exptime(row.ra, row.dec, b)[0]) for b in PS1_BANDS]
        np.testing.assert_allclose(st.ps1_zp, [ps1_zero_point(e) for e in exps])


def test_stored_stamps_equal_the_service_responses(sky, cache):
    root, targets, result = cache
    truth = result["truth"].to_pandas()
    row = truth[(truth.expect_ps1_failure == "") & truth.galex_covered].iloc[0]
    st = LocalFitsSource(root).get(row.target_id, row.ra, row.dec)
    for k, b in enumerate(PS1_BANDS):
        img, zp, _ = read_ps1_cutout(render_ps1(sky, row.ra, row.dec, b))
        np.testing.assert_array_equal(st.ps1[k], img)
        assert st.ps1_zp[k] == zp
    galex, _ = read_legacy_cube(render_legacy(sky, row.ra, row.dec, "galex"), "galex")
    np.testing.assert_array_equal(st.galex, galex)
    # GALEX in the release is FUV, NUV: the service's first plane (NUV) is the release's second
    raw = fits.getdata(cutout_path(root, "galex", row.target_id))
    np.testing.assert_array_equal(st.galex[1], raw[0])


def _copy_target(root, src_root, target_id):
    for paths in target_paths(src_root, target_id).values():
        for p in paths:
            dst = root / p.relative_to(src_root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(p.read_bytes())


def test_missing_corrupt_and_bad_shape_files(sky, cache, tmp_path):
    src_root, targets, result = cache
    truth = result["truth"].to_pandas()
    good = truth[(truth.expect_ps1_failure == "") & (truth.ps1_nan == "none")].target_id.tolist()[:5]
    for t in good:
        _copy_target(tmp_path, src_root, t)
    src = LocalFitsSource(tmp_path)
    row = truth.set_index("target_id")

    def get(t):
        return src.get(t, row.loc[t, "ra"], row.loc[t, "dec"])

    assert get(good[0]).failures == {}
    # a missing unWISE cube and one missing PS1 band
    cutout_path(tmp_path, "unwise", good[0]).unlink()
    cutout_path(tmp_path, "ps1", good[0], "r").unlink()
    st = get(good[0])
    assert st.failures == {"unwise": "missing", "ps1": "missing: r"} and st.unwise is None and st.ps1 is None
    assert st.galex is not None
    # an HTML error page saved as a GALEX cube
    cutout_path(tmp_path, "galex", good[1]).write_bytes(b"<!DOCTYPE html><html><body>503 Service Unavailable</body></html>")
    st = get(good[1])
    assert st.failures == {"galex": "unreadable: not FITS (an HTML page)"} and st.galex is None
    # a truncated PS1 band
    p = cutout_path(tmp_path, "ps1", good[2], "z")
    p.write_bytes(p.read_bytes()[:5000])
    assert get(good[2]).failures["ps1"].startswith("unreadable: truncated data") and get(good[2]).failures["ps1"].endswith("[z]")
    # a PS1 band of the wrong size, written by astropy
    hdu = fits.PrimaryHDU(np.zeros((160, 170), dtype=np.float32))
    hdu.header["EXPTIME"] = 300.0
    buf = io.BytesIO()
    hdu.writeto(buf)
    cutout_path(tmp_path, "ps1", good[3], "y").write_bytes(buf.getvalue())
    assert get(good[3]).failures == {"ps1": "bad_shape: (160, 170) [y]"}
    # an unWISE file without BAND keywords
    with fits.open(cutout_path(tmp_path, "unwise", good[4])) as hdul:
        h = hdul[0].header.copy()
        data = hdul[0].data.copy()
    for k in ("BAND0", "BAND1", "BANDS"):
        del h[k]
    buf = io.BytesIO()
    fits.PrimaryHDU(data, header=h).writeto(buf)
    cutout_path(tmp_path, "unwise", good[4]).write_bytes(buf.getvalue())
    assert get(good[4]).failures == {"unwise": "unreadable: missing keyword BAND0"}
    # every target missing entirely
    st = src.get("sdss-0", 150.0, 2.0)
    assert st.failures == {"galex": "missing", "ps1": "missing", "unwise": "missing"}


def test_wrong_position_is_caught_when_asked(sky, cache):
    root, targets, result = cache
    truth = result["truth"].to_pandas()
    row = truth[truth.expect_ps1_failure == ""].iloc[0]
    src = LocalFitsSource(root, max_offset_px=1.0)
    assert src.get(row.target_id, row.ra, row.dec).failures == {}
    off = 3.0 / 3600  # 3 arcsec north: 12 PS1 pixels, 2 GALEX pixels, ~1.1 unWISE pixels
    st = src.get(row.target_id, row.ra, row.dec + off)
    assert st.failures["ps1"].startswith("wrong_position: 12.0 px")
    assert st.failures["galex"] == "wrong_position: 2.0 px"
    assert st.failures["unwise"] == "wrong_position: 1.1 px"


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(InputDataError, match="does not exist"):
        LocalFitsSource(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------- parsers


def _ps1_bytes(data: np.ndarray, **cards) -> bytes:
    hdu = fits.PrimaryHDU(data)
    for k, v in cards.items():
        hdu.header[k] = v
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def test_bsoften_linearisation_synthetic():
    rng = np.random.default_rng(0)
    linear = rng.normal(0, 40, (170, 170)) + 5000 * np.exp(-((np.arange(170) - 84.5) ** 2)[None, :] / 50)
    bsoften, boffset = 37.5, 2.25
    a = 2.5 / math.log(10)
    compressed = a * np.arcsinh((linear - boffset) / (2 * bsoften))
    compressed[10:12, 10:12] = np.nan
    img, zp, _ = read_ps1_cutout(
        _ps1_bytes(compressed.astype(np.float32), EXPTIME=400.0, BSOFTEN=bsoften, BOFFSET=boffset)
    )
    assert zp == pytest.approx(25 + 2.5 * math.log10(400.0))
    ok = ~np.isnan(img)
    assert ok.sum() == 170 * 170 - 4
    np.testing.assert_allclose(img[ok], linear[ok], rtol=1e-5, atol=1e-3)
    # the same values stored as scaled 16-bit integers (BZERO/BSCALE applied before the asinh)
    bscale, bzero = float(np.nanmax(np.abs(compressed)) / 30000), 0.5
    ints = np.round((np.nan_to_num(compressed) - bzero) / bscale).astype(np.int16)
    img16, _, _ = read_ps1_cutout(
        _ps1_bytes(ints, EXPTIME=400.0, BSOFTEN=bsoften, BOFFSET=boffset, BSCALE=bscale, BZERO=bzero)
    )
    np.testing.assert_allclose(img16[ok], linear[ok], rtol=2e-3, atol=0.5)
    # without the compression keywords the values pass through unchanged
    plain, _, _ = read_ps1_cutout(_ps1_bytes(linear.astype(np.float32), EXPTIME=400.0))
    np.testing.assert_array_equal(plain, linear.astype(np.float32))


def test_mock_compressed_response_linearises(sky):
    g = np.flatnonzero(sky.ps1_covered(sky.ra, sky.dec) & (sky.ps1_nan == 0))[0]
    lin, zp1, h1 = read_ps1_cutout(render_ps1(sky, sky.ra[g], sky.dec[g], "r"))
    comp, zp2, h2 = read_ps1_cutout(render_ps1(sky, sky.ra[g], sky.dec[g], "r", compressed=True))
    assert "BSOFTEN" in h2 and "BSOFTEN" not in h1 and zp1 == zp2
    np.testing.assert_allclose(comp, lin, atol=1e-3 * np.abs(lin).max())


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"<html><head><title>Error</title></head><body>Internal error</body></html>", "an HTML page"),
        (b"", "empty"),
        (b"SIMPLE  =                    T" + b" " * 50, "no END card"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "not FITS"),
    ],
)
def test_parsers_reject_non_fits(payload, fragment):
    for call in (lambda: read_ps1_cutout(payload), lambda: read_legacy_cube(payload, "galex")):
        with pytest.raises(CutoutError, match=fragment) as e:
            call()
        assert isinstance(e.value, InputDataError) and e.value.reason.startswith("unreadable: ")


def test_parsers_check_shape_and_keywords():
    with pytest.raises(CutoutError, match="missing keyword EXPTIME"):
        read_ps1_cutout(_ps1_bytes(np.zeros((170, 170), np.float32)))
    with pytest.raises(CutoutShapeError) as e:
        read_ps1_cutout(_ps1_bytes(np.zeros((2, 170, 170), np.float32), EXPTIME=1.0))
    assert e.value.reason == "bad_shape: (2, 170, 170)"
    with pytest.raises(CutoutShapeError):
        read_legacy_cube(_ps1_bytes(np.zeros((32, 32), np.float32)), "unwise")
    cube = np.stack([np.full((32, 32), 1.0), np.full((32, 32), 2.0)]).astype(np.float32)
    good = _ps1_bytes(cube, BAND0="2", BAND1="1")
    out, _ = read_legacy_cube(good, "unwise")
    assert out[0, 0, 0] == 2.0 and out[1, 0, 0] == 1.0  # reordered to W1, W2 from the header
    with pytest.raises(CutoutError, match="expected"):
        read_legacy_cube(_ps1_bytes(cube, BAND0="g", BAND1="r"), "unwise")
    with pytest.raises(ValueError):
        read_legacy_cube(good, "ps1")


def test_wcs_centre_offset_on_a_cdelt_header():
    """Real stack cutouts may carry CDELT/PC instead of CD; the offset follows the header WCS."""
    h = fits.Header()
    h["NAXIS"], h["NAXIS1"], h["NAXIS2"] = 2, 170, 170
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    h["CRPIX1"], h["CRPIX2"] = 85.5 + 20, 85.5  # tangent point 20 px right of centre
    h["CDELT1"], h["CDELT2"] = -0.25 / 3600, 0.25 / 3600
    h["PC1_1"], h["PC2_2"] = 1.0, 1.0
    assert wcs_centre_offset_pixels(h, 150.0, 2.0) == pytest.approx(20.0, abs=1e-6)


def test_targets_without_required_columns_are_rejected(sky, tmp_path):
    with pytest.raises(InputDataError, match="target_id"):
        write_cutouts(sky, pd.DataFrame({"ra": [1.0], "dec": [2.0]}), tmp_path, progress=False)
