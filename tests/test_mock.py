"""The mock sky: determinism, catalog formats and planted defects, cutout formats, and the redshift signal."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy.spatial import cKDTree
from scipy.stats import spearmanr

from builders.catalogs.compile import DEFAULT_PRIORITY
from builders.mock.catalogs import healpix_nest, write_catalogs
from builders.mock.cutouts import NoCoverageError, ps1_nan_fraction, render_legacy, render_ps1
from builders.mock.sky import MockSky, unit_vectors
from mantis_data.bands import SURVEYS, band, ps1_zero_point, zero_point
from mantis_data.cutouts.fits import read_legacy_cube, read_ps1_cutout, wcs_centre_offset_pixels

SDSS_COLUMNS = [
    "specObjID", "ra", "dec", "z", "zErr", "zWarning", "class", "subClass", "z_noqso", "zErr_noqso",
    "zWarning_noqso", "z_person", "class_person", "plate", "mjd", "fiberID", "survey", "programname",
    "legacy_target1",
]
DESI_COLUMNS = [
    "TARGETID", "SURVEY", "PROGRAM", "HEALPIX", "TARGET_RA", "TARGET_DEC", "Z", "ZERR", "ZWARN", "SPECTYPE",
    "SUBTYPE", "DELTACHI2", "COADD_FIBERSTATUS", "ZCAT_PRIMARY", "ZCAT_NSPEC",
]


@pytest.fixture(scope="module")
def sky() -> MockSky:
    return MockSky(400, seed=7)


@pytest.fixture(scope="module")
def catalogs(sky, tmp_path_factory):
    folder = tmp_path_factory.mktemp("catalogs")
    paths = write_catalogs(sky, folder)
    return paths, pd.read_parquet(paths["truth"])


# ---------------------------------------------------------------------------------------------- sky


def test_sky_is_deterministic():
    a, b, c = MockSky(300, seed=3), MockSky(300, seed=3), MockSky(300, seed=4)
    for name in ("ra", "dec", "z_true", "r_half_arcsec", "axis_ratio", "pa_deg", "ps1_nan_radius_px"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.table().equals(b.table())
    assert not np.array_equal(a.z_true, c.z_true)
    fa, fb = a.band_fluxes(), b.band_fluxes()
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k])


def test_sky_population_is_realistic():
    s = MockSky(4000, seed=1)
    assert np.all((s.z_true > 0.01) & (s.z_true < 1.5))
    assert 0.6 < np.mean((s.z_true > 0.05) & (s.z_true < 0.8)) < 0.95
    assert np.mean(s.z_true > 1.0) > 0.02  # a tail to high z
    assert 0.03 <= np.mean(s.dec < -30) <= 0.05
    assert 0.05 < np.mean(~s.galex_covered) < 0.3
    assert {"red", "blue"} == set(s.galaxy_type)
    mags = s.band_mags_ab()
    # most galaxies are faint or absent in GALEX, nearly all detected by Pan-STARRS in r
    assert np.mean(mags["NUV"] > band("NUV").depth_mag_ab) > 0.5
    assert np.mean(mags["FUV"] > band("FUV").depth_mag_ab) > 0.7
    assert np.mean(mags["r"] < band("r").depth_mag_ab) > 0.95
    # fainter and smaller with distance
    assert spearmanr(mags["r"], s.z_true).statistic > 0.6
    assert spearmanr(s.r_half_arcsec, s.z_true).statistic < -0.5
    # galaxies are kept apart, so matching within 1 arcsec is unambiguous
    idx, sep = s.nearest(s.ra[:50] + 1e-9, s.dec[:50])
    np.testing.assert_array_equal(idx, np.arange(50))


def test_band_fluxes_are_in_stored_units(sky):
    mags, flux = sky.band_mags_ab(), sky.band_fluxes()
    g = 11
    for b in SURVEYS["ps1"].bands:
        zp = ps1_zero_point(float(sky.ps1_exptime(sky.ra[g], sky.dec[g], b)[0]))
        assert flux[b][g] == pytest.approx(10 ** (-0.4 * (mags[b][g] - zp)), rel=1e-12)
    for s in ("galex", "unwise"):
        sv = SURVEYS[s]
        for k, b in enumerate(sv.bands):
            vega = mags[b][g] - sv.ab_minus_vega[k]
            assert flux[b][g] == pytest.approx(10 ** (-0.4 * (vega - zero_point(b))), rel=1e-12)
    # unWISE is Vega: the same AB magnitude is more Vega nanomaggies in W2 than W1
    assert sv.ab_minus_vega[1] > sv.ab_minus_vega[0] > 0


def test_colours_carry_redshift_in_the_sed():
    s = MockSky(3000, seed=2)
    m = s.band_mags_ab()
    low = s.z_true < 0.4
    assert spearmanr((m["g"] - m["r"])[low], s.z_true[low]).statistic > 0.5
    assert spearmanr(m["r"] - m["W1"], s.z_true).statistic > 0.7
    red = s.is_red & low
    assert spearmanr((m["g"] - m["r"])[red], s.z_true[red]).statistic > 0.85


# ---------------------------------------------------------------------------------------------- catalogs


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _set(v) -> bool:
    return v is not None and math.isfinite(v) and v > 0


def test_catalog_files_have_real_formats(catalogs):
    paths, _ = catalogs
    df = pd.read_csv(paths["sdss"], on_bad_lines="skip")
    assert list(df.columns) == SDSS_COLUMNS
    assert df["specObjID"].dtype == np.int64 and df["specObjID"].min() > 2**58
    with fits.open(paths["desi"]) as hdul:
        assert "ZCATALOG" in hdul and isinstance(hdul["ZCATALOG"], fits.BinTableHDU)
    t = Table.read(paths["desi"], hdu="ZCATALOG")
    assert t.colnames == DESI_COLUMNS
    kinds = {c: t[c].dtype.newbyteorder("=") for c in t.colnames}
    assert kinds["TARGETID"] == np.int64 and kinds["ZWARN"] == np.int64 and kinds["HEALPIX"] == np.int32
    assert kinds["COADD_FIBERSTATUS"] == np.int32 and kinds["ZCAT_NSPEC"] == np.int16
    assert kinds["ZCAT_PRIMARY"] == np.dtype(bool) and kinds["Z"] == np.float64
    assert set(np.char.strip(t["SPECTYPE"].astype(str))) == {"GALAXY", "STAR", "QSO"}
    np.testing.assert_array_equal(t["HEALPIX"], healpix_nest(64, t["TARGET_RA"], t["TARGET_DEC"]))


def test_sdss_rows_match_planted_truth(sky, catalogs):
    paths, truth = catalogs
    tr = truth[truth.survey == "sdss"].set_index("row").sort_index()
    with open(paths["sdss"], newline="") as f:
        rows = list(csv.reader(f))
    header, data = rows[0], rows[1:]
    assert header == SDSS_COLUMNS and len(data) == len(tr)
    col = {c: i for i, c in enumerate(header)}
    seen_malformed = []
    for i, fields in enumerate(data):
        planted = tr.loc[i, "planted"]
        if len(fields) != len(header) or _num(fields[col["ra"]]) is None or _num(fields[col["z"]]) is None:
            seen_malformed.append(i)
            continue
        assert fields[col["specObjID"]] == tr.loc[i, "survey_objid"]
        v = {c: fields[col[c]] for c in header}
        defects = []
        if int(v["zWarning"]) != 0:
            defects.append("zwarning")
        if v["class"] != "GALAXY":
            defects.append("class")
        if float(v["dec"]) < -30:
            defects.append("dec_below_-30")
        zp, zn, z = _num(v["z_person"]), _num(v["z_noqso"]), float(v["z"])
        best = zp if _set(zp) else (zn if _set(zn) else z)
        if not 0 < best < 1.6:
            defects.append("z_out_of_range")
        expected = [] if planted in ("", "duplicate") else [planted]
        assert defects == expected, (i, planted, defects)
        assert best == pytest.approx(tr.loc[i, "z_expected"], abs=0)
        if planted == "" and not tr.loc[i, "z_conflict"]:
            assert abs(best - tr.loc[i, "z_true"]) < 1e-3 * (1 + tr.loc[i, "z_true"])
    assert seen_malformed == sorted(tr.index[tr.planted == "malformed"])
    assert len(seen_malformed) == 3
    # the preference rule matters: some rows have z_person, some z_noqso, differing from z
    assert (tr.z_source == "z_person").sum() >= 1 and (tr.z_source == "z_noqso").sum() >= 1


def test_desi_rows_match_planted_truth(catalogs):
    paths, truth = catalogs
    t = Table.read(paths["desi"], hdu="ZCATALOG")
    t.convert_bytestring_to_unicode()
    t = t.to_pandas()
    tr = truth[truth.survey == "desi"].set_index("row").sort_index()
    assert len(t) == len(tr)
    assert (t["TARGETID"].astype(str).values == tr["survey_objid"].values).all()
    groups = t.groupby("TARGETID")
    assert (groups["ZCAT_PRIMARY"].sum() == 1).all()
    assert (groups["ZCAT_NSPEC"].first() == groups.size()).all()
    assert (groups.size() > 1).sum() >= 3
    for i, r in t.iterrows():
        defects = []
        if not r["ZCAT_PRIMARY"]:
            defects.append("not_primary")
        if r["ZWARN"] != 0:
            defects.append("zwarning")
        if r["SPECTYPE"].strip() != "GALAXY":
            defects.append("class")
        if r["TARGET_DEC"] < -30:
            defects.append("dec_below_-30")
        if not 0 < r["Z"] < 1.6:
            defects.append("z_out_of_range")
        planted = tr.loc[i, "planted"]
        assert defects == ([] if planted in ("", "duplicate") else [planted]), (i, planted, defects)


def test_planted_rates_and_duplicates(sky, catalogs):
    _, truth = catalogs
    counts = truth.planted.value_counts()
    n_north = int((sky.dec >= -30).sum())
    assert counts["dec_below_-30"] == int((sky.dec < -30).sum())
    assert counts["zwarning"] == round(0.05 * n_north)
    assert counts["class"] == round(0.04 * sky.n) and counts["z_out_of_range"] == round(0.012 * sky.n)
    assert counts["malformed"] == 3 and counts["not_primary"] >= 10 and counts["duplicate"] >= 10
    # every galaxy has exactly one home row (not a duplicate / extra coadd); interlopers have galaxy_id -1
    home = truth[~truth.planted.isin(["duplicate", "not_primary"]) & (truth.galaxy_id >= 0)]
    assert sorted(home.galaxy_id) == list(range(sky.n))
    assert (truth[truth.planted.isin(["class", "z_out_of_range"])].galaxy_id == -1).all()
    # duplicates: within 0.3 arcsec of their clean home row; conflicts differ by > 0.01 (1 + z)
    key = truth.survey + ":" + truth.survey_objid
    dups = truth[truth.planted == "duplicate"]
    assert dups.duplicate_of.isin(key[truth.planted == ""]).all()
    assert {"sdss", "desi"} <= set(dups.survey) and len(set(dups.survey)) >= 4  # the other surveys too
    by_key = truth[truth.planted == ""].assign(key=key).set_index("key")
    ref = by_key.loc[dups.duplicate_of]
    d_arcsec = 3600 * np.hypot((dups.ra.values - ref.ra.values) * np.cos(np.radians(ref.dec.values)),
                               dups.dec.values - ref.dec.values)
    assert d_arcsec.max() <= 0.3 + 1e-6
    dz = np.abs(dups.z_expected.values - ref.z_expected.values) / (1 + ref.z_true.values)
    assert (dz[dups.z_conflict.values] > 0.01).all() and dups.z_conflict.sum() >= 2
    assert truth.z_conflict.sum() == 2 * dups.z_conflict.sum()  # both rows of a conflicting pair
    # the dropped row of a pair is the lower-priority survey's (DESI first), else the larger target id
    kept_survey = ref.index.str.split(":").str[0].values
    cross = dups.survey.values != kept_survey
    rank = {s: i for i, s in enumerate(DEFAULT_PRIORITY)}
    assert all(rank[d] > rank[k] for d, k in zip(dups.survey.values[cross], kept_survey[cross], strict=True))
    sdss_desi = cross & np.isin(dups.survey.values, ["sdss", "desi"]) & np.isin(kept_survey, ["sdss", "desi"])
    assert (dups.survey.values[sdss_desi] == "sdss").all() and cross.sum() >= 5
    assert (dups.target_id.values[~cross] > ref.target_id.values[~cross]).all()
    assert (dz[~dups.z_conflict.values] < 0.01).all()
    # clean rows of distinct galaxies are never within 1 arcsec of each other
    clean = truth[truth.planted == ""]
    assert clean.galaxy_id.is_unique
    xyz = unit_vectors(clean.ra.values, clean.dec.values)
    nearest, _ = cKDTree(xyz).query(xyz, k=2)
    assert np.degrees(nearest[:, 1]).min() * 3600 > 1.0


def test_catalogs_are_byte_deterministic(tmp_path):
    s1, s2 = MockSky(150, seed=5), MockSky(150, seed=5)
    p1, p2 = write_catalogs(s1, tmp_path / "a"), write_catalogs(s2, tmp_path / "b")
    for k in ("sdss", "desi", "truth"):
        assert p1[k].read_bytes() == p2[k].read_bytes(), k


def test_healpix_matches_healpy():
    hp = pytest.importorskip("healpy")
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, 20000), np.degrees(np.arcsin(rng.uniform(-1, 1, 20000)))
    for nside in (1, 8, 64):
        np.testing.assert_array_equal(healpix_nest(nside, ra, dec), hp.ang2pix(nside, ra, dec, nest=True, lonlat=True))


# ---------------------------------------------------------------------------------------------- cutouts


def _covered_galaxies(sky: MockSky) -> np.ndarray:
    return np.flatnonzero(sky.ps1_covered(sky.ra, sky.dec))


def test_renders_are_deterministic_and_order_independent(sky):
    i, j = _covered_galaxies(sky)[:2]
    a1 = render_ps1(sky, sky.ra[i], sky.dec[i], "g")
    b1 = render_legacy(sky, sky.ra[j], sky.dec[j], "unwise-neo7")
    b2 = render_legacy(sky, sky.ra[j], sky.dec[j], "unwise-neo7")
    a2 = render_ps1(MockSky(400, seed=7), sky.ra[i], sky.dec[i], "g")
    assert a1 == a2 and b1 == b2
    assert render_ps1(sky, sky.ra[i], sky.dec[i], "r") != a1  # noise differs per band
    assert render_ps1(MockSky(400, seed=8), sky.ra[i], sky.dec[i], "g") != a1


def test_ps1_response_format(sky):
    i = _covered_galaxies(sky)[3]
    data = render_ps1(sky, sky.ra[i], sky.dec[i], "i")
    assert len(data) % 2880 == 0
    with fits.open(io.BytesIO(data)) as hdul:
        hdul.verify("exception")
        assert len(hdul) == 1
        h, img = hdul[0].header, hdul[0].data
    assert img.shape == (170, 170) and img.dtype == np.dtype(">f4")
    assert h["CTYPE1"] == "RA---TAN" and h["CTYPE2"] == "DEC--TAN"
    assert h["CD2_2"] * 3600 == pytest.approx(SURVEYS["ps1"].pixel_scale_arcsec)
    assert h["CD1_1"] * 3600 == pytest.approx(-SURVEYS["ps1"].pixel_scale_arcsec)
    assert h["FPA.FILTER"].startswith("i.")
    assert 100 < h["EXPTIME"] < 1500
    assert wcs_centre_offset_pixels(h, sky.ra[i], sky.dec[i]) < 0.01
    # a shifted request: 10 pixels east of the galaxy
    shifted = render_ps1(sky, sky.ra[i] + 10 * 0.25 / 3600 / np.cos(np.radians(sky.dec[i])), sky.dec[i], "i")
    _, _, hs = read_ps1_cutout(shifted)
    assert wcs_centre_offset_pixels(hs, sky.ra[i], sky.dec[i]) == pytest.approx(10, abs=0.05)
    # EXPTIME varies by band and by position
    exps = {b: sky.ps1_exptime(sky.ra, sky.dec, b) for b in SURVEYS["ps1"].bands}
    assert len(np.unique(exps["g"])) > 5 and not np.allclose(exps["g"], exps["r"])


def test_ps1_no_coverage_raises(sky):
    south = np.flatnonzero(sky.dec < -30)[0]
    with pytest.raises(NoCoverageError):
        render_ps1(sky, sky.ra[south], sky.dec[south], "g")
    planted = np.flatnonzero(sky.ps1_missing)[0]
    with pytest.raises(NoCoverageError):
        render_ps1(sky, sky.ra[planted], sky.dec[planted], "g")


def test_legacy_response_format_and_band_order(sky):
    i = next(g for g in _covered_galaxies(sky) if sky.galex_covered[g] and sky.mag_r[g] < 18)
    for layer, survey, codes in (("galex", "galex", ("n", "f")), ("unwise-neo7", "unwise", ("1", "2"))):
        data = render_legacy(sky, sky.ra[i], sky.dec[i], layer)
        with fits.open(io.BytesIO(data)) as hdul:
            hdul.verify("exception")
            h, raw = hdul[0].header, hdul[0].data.astype(np.float32)
        assert raw.shape == (2, 32, 32) and h["NAXIS3"] == 2
        assert (h["BAND0"], h["BAND1"]) == codes
        assert abs(h["CD2_2"] * 3600 - SURVEYS[survey].pixel_scale_arcsec) < 1e-9
        assert wcs_centre_offset_pixels(h, sky.ra[i], sky.dec[i]) < 0.01
        cube, _ = read_legacy_cube(data, survey)
        assert cube.dtype == np.float32 and not np.isnan(cube).any()
        if survey == "galex":
            np.testing.assert_array_equal(cube, raw[::-1])  # FUV first in the release
        else:
            np.testing.assert_array_equal(cube, raw)
    # the bright galaxy is brighter in NUV than FUV (UV drop): plane order matters
    cube, _ = read_legacy_cube(render_legacy(sky, sky.ra[i], sky.dec[i], "galex"), "galex")
    assert cube[1].sum() > cube[0].sum()


def test_galex_zero_coverage_is_exactly_zero(sky):
    no = np.flatnonzero(~sky.galex_covered)[:5]
    yes = np.flatnonzero(sky.galex_covered)[:5]
    assert len(no) == 5
    for g in no:
        cube, _ = read_legacy_cube(render_legacy(sky, sky.ra[g], sky.dec[g], "galex"), "galex")
        assert (cube == 0.0).all() and not np.signbit(cube).any()
    for g in yes:
        cube, _ = read_legacy_cube(render_legacy(sky, sky.ra[g], sky.dec[g], "galex"), "galex")
        assert (cube != 0).mean() > 0.99
        unwise, _ = read_legacy_cube(render_legacy(sky, sky.ra[g], sky.dec[g], "unwise-neo7"), "unwise")
        assert (unwise != 0).mean() > 0.99


def test_ps1_nan_patches_as_flagged(sky):
    covered = set(_covered_galaxies(sky).tolist())
    small = [g for g in np.flatnonzero(sky.ps1_nan == 1) if g in covered][:4]
    large = [g for g in np.flatnonzero(sky.ps1_nan == 2) if g in covered][:4]
    clean = [g for g in np.flatnonzero(sky.ps1_nan == 0) if g in covered][:3]
    assert small and large
    for g in small + large + clean:
        frac = np.array([
            np.isnan(read_ps1_cutout(render_ps1(sky, sky.ra[g], sky.dec[g], b))[0]).mean() for b in SURVEYS["ps1"].bands
        ])
        np.testing.assert_allclose(frac, ps1_nan_fraction(sky, sky.ra[g], sky.dec[g]))
        if g in small:
            assert (frac > 0).sum() == 1 and 0 < frac.max() < 0.01
        elif g in large:
            assert frac.max() > 0.01
        else:
            assert (frac == 0).all()


def test_images_carry_the_flux_and_the_redshift_signal():
    s = MockSky(300, seed=3)
    flux = s.band_fluxes()
    yy, xx = np.mgrid[:170, :170]
    ap_ps1 = (xx - 84.5) ** 2 + (yy - 84.5) ** 2 <= 24**2  # 6 arcsec radius
    y2, x2 = np.mgrid[:32, :32]
    ap_w = (x2 - 15.5) ** 2 + (y2 - 15.5) ** 2 <= 4**2  # 11 arcsec radius
    w1 = SURVEYS["unwise"]
    ok = np.flatnonzero(s.ps1_covered(s.ra, s.dec) & (s.ps1_nan == 0))
    g_mag, r_mag, w_mag, ratio = [], [], [], []
    for i in ok:
        ig, zpg, _ = read_ps1_cutout(render_ps1(s, s.ra[i], s.dec[i], "g"))
        ir, zpr, _ = read_ps1_cutout(render_ps1(s, s.ra[i], s.dec[i], "r"))
        cube, _ = read_legacy_cube(render_legacy(s, s.ra[i], s.dec[i], "unwise-neo7"), "unwise")
        g_mag.append(zpg - 2.5 * np.log10(max(ig[ap_ps1].sum(), 1e-3)))
        r_mag.append(zpr - 2.5 * np.log10(max(ir[ap_ps1].sum(), 1e-3)))
        w_mag.append(w1.zero_point + w1.ab_minus_vega[0] - 2.5 * np.log10(max(cube[0][ap_w].sum(), 1e-6)))
        ratio.append(ir.sum() / flux["r"][i])
    g_mag, r_mag, w_mag = map(np.array, (g_mag, r_mag, w_mag))
    z, red = s.z_true[ok], s.is_red[ok]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.03)  # images hold the catalogued flux
    low = z < 0.4
    assert low.sum() > 80
    assert spearmanr((g_mag - r_mag)[low], z[low]).statistic > 0.4
    for sel in (red & low, ~red & low):
        assert spearmanr((g_mag - r_mag)[sel], z[sel]).statistic > 0.6
    assert spearmanr(r_mag - w_mag, z).statistic > 0.65


def test_mock_galex_is_in_counts_per_second_where_the_paper_clip_works():
    """GALEX pixels in counts/s (AB zero points 18.82, 20.08) sit below the paper's 0.05 clip, except galaxy cores."""
    from mantis_data.cutouts.fits import read_legacy_cube
    from mantis_data.transforms import PAPER_EARLY

    assert SURVEYS["galex"].flux_unit == "counts/s"
    assert (zero_point("FUV"), zero_point("NUV")) == (18.82, 20.08)
    clip = PAPER_EARLY.scaling["galex"].scale
    assert clip == 0.05
    sky = MockSky(250, seed=3)
    cubes = []
    for i in range(sky.n):
        cube, _ = read_legacy_cube(render_legacy(sky, float(sky.ra[i]), float(sky.dec[i]), "galex"), "galex")
        if cube.any():  # covered by GALEX
            cubes.append(cube)
    cubes = np.stack(cubes)
    assert len(cubes) > 150
    for k, name in enumerate(SURVEYS["galex"].bands):
        x = cubes[:, k]
        sky_sigma = float(np.std(x[:, :6, :6]))  # corners: sky noise
        saturated = float((x > clip).mean())
        peaks = x[:, 13:19, 13:19].max(axis=(1, 2))
        # the noise is well inside [0, clip] and few pixels saturate ...
        assert sky_sigma < clip / 2, name
        assert saturated < 0.03, name
        # ... while the brighter galaxies' cores reach the clip's scale (the signal is not lost below it)
        assert np.percentile(peaks, 95) > clip, name
        # in the old unit (AB nanomaggies, zero point 22.5) the same sky would saturate many times more pixels
        old = x * 10 ** (0.4 * (22.5 - zero_point(name)))
        assert (old > clip).mean() > 10 * max(saturated, 0.005), name
