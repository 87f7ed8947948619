"""Dust E(B-V) through the real dustmaps classes, on tiny maps written in the real files' layout.

The tiny maps follow the files dustmaps reads:
  csfd/csfd_ebv.fits, csfd/mask.fits: healpy ``write_map`` output (extension 'xtension', column 'T',
      1024 pixels per row, RING, Galactic), which ``CSFDQuery`` reads as RING whatever the header says;
  planck/HFI_CompMap_ThermalDustModel_2048_R1.20.fits: extension 'COMP-MAP', one pixel per row, columns
      TAU353 ERR_TAU EBV RADIANCE TEMP ERR_TEMP BETA ERR_BETA, ORDERING='NESTED' (read from the header);
  planck/COM_CompMap_Dust-GNILC-Model-Opacity_2048_R2.01.fits: HDU 1 'COMP-MAP', columns TAU353 ERR_TAU, NESTED.
Each map's pixel value is a different function of the pixel index, so a wrong column, ordering, frame or
scale gives a different number.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import healpy  # noqa: E402
import numpy as np
import pytest
from astropy import units as u  # noqa: E402
from astropy.coordinates import SkyCoord  # noqa: E402
from astropy.io import fits  # noqa: E402

from mantis_data import dust  # noqa: E402
from mantis_data.errors import InputDataError, MantisDataError  # noqa: E402

NSIDE = 16
NPIX = 12 * NSIDE**2
CSFD_REL = ("csfd/csfd_ebv.fits", "csfd/mask.fits")
PLANCK_REL = "planck/HFI_CompMap_ThermalDustModel_2048_R1.20.fits"
GNILC_REL = "planck/COM_CompMap_Dust-GNILC-Model-Opacity_2048_R2.01.fits"


def csfd_value(ipix_ring: np.ndarray) -> np.ndarray:
    """Tiny CSFD map, indexed by RING pixel."""
    return (0.001 * (ipix_ring + 1)).astype(np.float32)


def planck_ebv_value(ipix_nest: np.ndarray) -> np.ndarray:
    """Tiny Planck R1.20 EBV column, indexed by NESTED pixel."""
    return (0.5 - 1e-4 * ipix_nest).astype(np.float32)


def planck_tau_value(ipix_nest: np.ndarray) -> np.ndarray:
    """Tiny Planck R1.20 TAU353 column (must NOT be what ebv_planck returns in mode csfd-planck)."""
    return (1e-7 * (ipix_nest + 7)).astype(np.float32)


def gnilc_tau_value(ipix_nest: np.ndarray) -> np.ndarray:
    """Tiny GNILC TAU353 column, indexed by NESTED pixel."""
    return (2e-6 + 3e-9 * ipix_nest).astype(np.float32)


def _healpix_header(nest: bool) -> list[tuple[str, object]]:
    return [
        ("PIXTYPE", "HEALPIX"),
        ("ORDERING", "NESTED" if nest else "RING"),
        ("COORDSYS", "GALACTIC"),
        ("NSIDE", NSIDE),
        ("FIRSTPIX", 0),
        ("LASTPIX", NPIX - 1),
        ("INDXSCHM", "IMPLICIT"),
        ("OBJECT", "FULLSKY"),
    ]


def _write_comp_map(path: Path, columns: dict[str, np.ndarray]) -> None:
    """A Planck-archive style component map: empty primary + BINTABLE 'COMP-MAP', one pixel per row, NESTED."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name=k, format="E", array=v.astype(np.float32)) for k, v in columns.items()], name="COMP-MAP"
    )
    for key, value in _healpix_header(nest=True):
        table.header[key] = value
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)


def write_tiny_maps(root: Path) -> Path:
    """Write all four tiny dust maps under ``root`` in the dustmaps data-directory layout; return root."""
    ipix = np.arange(NPIX)
    (root / "csfd").mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        healpy.write_map(root / CSFD_REL[0], csfd_value(ipix), column_names=["T"], dtype=np.float32, coord="G", nest=False)
        healpy.write_map(
            root / CSFD_REL[1], (ipix % 8).astype(np.int16), column_names=["T"], dtype=np.int16, coord="G", nest=False
        )
    ones = np.ones(NPIX)
    _write_comp_map(
        root / PLANCK_REL,
        {
            "TAU353": planck_tau_value(ipix),
            "ERR_TAU": 1e-8 * ones,
            "EBV": planck_ebv_value(ipix),
            "RADIANCE": 1e-7 * ones,
            "TEMP": 20.0 * ones,
            "ERR_TEMP": 0.5 * ones,
            "BETA": 1.6 * ones,
            "ERR_BETA": 0.1 * ones,
        },
    )
    _write_comp_map(root / GNILC_REL, {"TAU353": gnilc_tau_value(ipix), "ERR_TAU": 1e-8 * ones})
    return root


@pytest.fixture(scope="module")
def map_dir(tmp_path_factory) -> Path:
    return write_tiny_maps(tmp_path_factory.mktemp("dustmaps-data"))


def sky_positions(n: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Random ICRS positions over the whole sky, degrees."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    return ra, dec


def galactic_pixels(ra: np.ndarray, dec: np.ndarray, nest: bool) -> np.ndarray:
    """HEALPix pixel (NSIDE) of ICRS positions in the Galactic frame, computed independently of mantis_data."""
    g = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").galactic
    return healpy.ang2pix(NSIDE, g.l.deg, g.b.deg, nest=nest, lonlat=True)


def pixel_centres_icrs(ipix: np.ndarray, nest: bool) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (ra, dec) in degrees of the centres of Galactic HEALPix pixels ``ipix``."""
    lon, lat = healpy.pix2ang(NSIDE, ipix, nest=nest, lonlat=True)
    c = SkyCoord(l=lon * u.deg, b=lat * u.deg, frame="galactic").icrs
    return c.ra.deg, c.dec.deg


# ---------------------------------------------------------------------------- values from the real classes


def test_csfd_planck_values_equal_the_map_at_each_targets_pixel(map_dir):
    ra, dec = sky_positions()
    got = dust.ebv(ra, dec, "csfd-planck", data_dir=map_dir)
    assert set(got) == {"ebv_csfd", "ebv_planck"}
    for v in got.values():
        assert v.dtype == np.float64 and v.shape == ra.shape
    np.testing.assert_array_equal(got["ebv_csfd"], csfd_value(galactic_pixels(ra, dec, nest=False)).astype(np.float64))
    np.testing.assert_array_equal(got["ebv_planck"], planck_ebv_value(galactic_pixels(ra, dec, nest=True)).astype(np.float64))
    # the orderings really differ on this map, so a wrong nest flag would have failed above
    assert (galactic_pixels(ra, dec, nest=False) != galactic_pixels(ra, dec, nest=True)).mean() > 0.9


def test_values_at_known_pixel_centres(map_dir):
    ring = np.array([0, 1, 100, 1000, 1500, NPIX // 2, NPIX - 1])
    ra, dec = pixel_centres_icrs(ring, nest=False)
    got = dust.ebv(ra, dec, "csfd-planck", data_dir=map_dir)
    np.testing.assert_array_equal(got["ebv_csfd"], csfd_value(ring).astype(np.float64))
    assert got["ebv_csfd"][0] == pytest.approx(0.001) and got["ebv_csfd"][-1] == pytest.approx(0.001 * NPIX)

    nest = np.array([0, 5, 77, 999, 2048, NPIX - 1])
    ra, dec = pixel_centres_icrs(nest, nest=True)
    got = dust.ebv(ra, dec, "csfd-planck", data_dir=map_dir)
    np.testing.assert_array_equal(got["ebv_planck"], planck_ebv_value(nest).astype(np.float64))
    assert got["ebv_planck"][0] == pytest.approx(0.5)


def test_gnilc_mode_uses_tau353_times_1p49e4(map_dir):
    ra, dec = sky_positions(200, seed=2)
    got = dust.ebv(ra, dec, "csfd-gnilc", data_dir=map_dir)
    nest = galactic_pixels(ra, dec, nest=True)
    expected = gnilc_tau_value(nest) * np.float32(1.49e4)  # PlanckGNILCQuery scales the float32 column in place
    np.testing.assert_allclose(got["ebv_planck"], expected.astype(np.float64), rtol=2e-7, atol=0)
    np.testing.assert_array_equal(got["ebv_csfd"], csfd_value(galactic_pixels(ra, dec, nest=False)).astype(np.float64))
    # and it differs from the R1.20 map at the same positions
    r120 = dust.ebv(ra, dec, "csfd-planck", data_dir=map_dir)["ebv_planck"]
    assert not np.allclose(r120, got["ebv_planck"])


def test_shapes_scalars_and_empty_input(map_dir):
    maps = dust.DustMaps("csfd-planck", data_dir=map_dir)
    ra, dec = sky_positions(12, seed=3)
    flat = maps.ebv(ra, dec)
    grid = maps.ebv(ra.reshape(3, 4), dec.reshape(3, 4))
    assert grid["ebv_csfd"].shape == (3, 4)
    np.testing.assert_array_equal(grid["ebv_planck"].ravel(), flat["ebv_planck"])
    one = maps.ebv(float(ra[5]), float(dec[5]))
    assert one["ebv_csfd"].shape == () and one["ebv_csfd"] == flat["ebv_csfd"][5]
    empty = maps.ebv(np.array([]), np.array([]))
    assert empty["ebv_csfd"].shape == (0,) and empty["ebv_planck"].dtype == np.float64


def test_bad_positions_raise_input_data_error(map_dir):
    maps = dust.DustMaps("csfd-planck", data_dir=map_dir)
    with pytest.raises(InputDataError, match="index 1"):
        maps.ebv([10.0, np.nan], [0.0, 0.0])
    with pytest.raises(InputDataError, match="dec=95"):
        maps.ebv([10.0], [95.0])


# ---------------------------------------------------------------------------- missing and broken maps


@pytest.mark.parametrize(
    "mode, files, command",
    [
        ("csfd-planck", [*CSFD_REL, PLANCK_REL], "dustmaps.planck.fetch()"),
        ("csfd-gnilc", [*CSFD_REL, GNILC_REL], "dustmaps.planck.fetch(which='GNILC')"),
    ],
)
def test_missing_maps_error_names_every_file_and_the_fetch_command(tmp_path, mode, files, command):
    empty = tmp_path / "no-maps"
    assert dust.required_files(mode, empty) == [empty / f for f in files]
    with pytest.raises(dust.MissingDustMapError) as info:
        dust.check_dust_maps(mode, empty)
    msg = str(info.value)
    assert isinstance(info.value, InputDataError)
    assert info.value.missing == [empty / f for f in files]
    for f in files:
        assert str(empty / f) in msg
    assert "import dustmaps.csfd; dustmaps.csfd.fetch()" in msg
    assert command in msg
    assert "--dust none" in msg and "--dust bh" in msg
    assert not empty.exists()  # checking never creates anything


def test_missing_error_lists_only_what_is_missing_and_comes_before_loading(tmp_path, map_dir):
    partial = tmp_path / "partial"
    (partial / "csfd").mkdir(parents=True)
    for rel in CSFD_REL:
        (partial / rel).write_bytes((map_dir / rel).read_bytes())
    dust.check_dust_maps("bh", partial)
    with pytest.raises(dust.MissingDustMapError) as info:
        dust.DustMaps("csfd-planck", partial)
    msg = str(info.value)
    assert str(partial / PLANCK_REL) in msg and "dustmaps.planck.fetch()" in msg
    assert str(partial / CSFD_REL[0]) not in msg and "dustmaps.csfd.fetch()" not in msg
    with pytest.raises(dust.MissingDustMapError):
        dust.ebv([1.0], [2.0], "csfd-planck", partial)


def test_default_data_dir_is_dustmaps_configured_one():
    from dustmaps.std_paths import data_dir

    assert dust.default_data_dir() == Path(data_dir())
    assert dust.required_files("csfd-planck")[0] == Path(data_dir()) / CSFD_REL[0]


def test_corrupt_map_raises_input_data_error_naming_it(tmp_path, map_dir):
    broken = tmp_path / "broken"
    for rel in (*CSFD_REL, PLANCK_REL):
        (broken / rel).parent.mkdir(parents=True, exist_ok=True)
        (broken / rel).write_bytes((map_dir / rel).read_bytes())
    (broken / PLANCK_REL).write_bytes(b"SIMPLE  = not really a FITS file")
    with pytest.raises(InputDataError, match="HFI_CompMap_ThermalDustModel_2048_R1.20.fits"):
        dust.DustMaps("csfd-planck", broken)


def test_unknown_mode():
    with pytest.raises(MantisDataError, match="csfd-planck"):
        dust.ebv([1.0], [1.0], "sfd")
    with pytest.raises(MantisDataError):
        dust.describe("planck")


# ---------------------------------------------------------------------------- modes that need no files


def test_none_mode_needs_no_files_and_gives_nan(tmp_path):
    assert dust.required_files("none", tmp_path / "nothing") == []
    dust.check_dust_maps("none", tmp_path / "nothing")
    got = dust.ebv([10.0, 200.0], [5.0, -20.0], "none", data_dir=tmp_path / "nothing")
    for col in dust.DUST_COLUMNS:
        assert got[col].shape == (2,) and np.isnan(got[col]).all()


def test_bh_mode_works_without_map_files(tmp_path):
    assert dust.required_files("bh", tmp_path / "nothing") == []
    # Galactic (l, b): high latitude where BH has data, and the plane where it has none. Off BH's 0.3 / 0.6 deg
    # grid, so the ICRS round trip cannot move a point across a cell boundary.
    l_deg = np.array([0.07, 90.11, 180.07, 270.13, 45.07, 120.11, 30.07, 200.13])
    b_deg = np.array([30.13, 45.17, 60.11, 70.07, -30.13, -50.17, 2.0, -5.0])
    icrs = SkyCoord(l=l_deg * u.deg, b=b_deg * u.deg, frame="galactic").icrs
    got = dust.ebv(icrs.ra.deg, icrs.dec.deg, "bh", data_dir=tmp_path / "nothing")
    high = np.abs(b_deg) >= 10
    assert np.isfinite(got["ebv_csfd"][high]).all()
    assert np.isnan(got["ebv_csfd"][~high]).all()
    assert (got["ebv_csfd"][high] > -0.05).all() and (got["ebv_csfd"][high] < 1.0).all()
    np.testing.assert_array_equal(got["ebv_planck"], got["ebv_csfd"])
    # equal to the dustmaps class queried directly in Galactic coordinates
    from dustmaps.bh import BHQuery

    direct = BHQuery().query(SkyCoord(l=l_deg * u.deg, b=b_deg * u.deg, frame="galactic"))
    np.testing.assert_allclose(got["ebv_csfd"], direct, rtol=0, atol=1e-12, equal_nan=True)


# ---------------------------------------------------------------------------- records for manifest and card


def test_describe_records_which_maps():
    planck = dust.describe("csfd-planck")
    gnilc = dust.describe("csfd-gnilc")
    assert planck["mode"] == "csfd-planck" and gnilc["mode"] == "csfd-gnilc"
    assert planck["ebv_csfd"]["files"] == list(CSFD_REL)
    assert planck["ebv_planck"]["files"] == [PLANCK_REL] and "R1.20" in planck["note"]
    assert gnilc["ebv_planck"]["files"] == [GNILC_REL] and "GNILC" in gnilc["note"]
    assert planck["ebv_planck"]["dustmaps_class"] == "dustmaps.planck.PlanckQuery"
    assert gnilc["ebv_planck"]["dustmaps_class"] == "dustmaps.planck.PlanckGNILCQuery"
    assert planck["dustmaps_version"] == dustmaps_version()
    none = dust.describe("none")
    assert none["ebv_csfd"] is None and none["ebv_planck"] is None and "--dust none" in none["note"]
    bh = dust.describe("bh")
    assert "Burstein" in bh["ebv_csfd"]["map"] and "Burstein" in bh["ebv_planck"]["map"] and "NOT" in bh["note"]
    assert dust.DEFAULT_DUST_MODE == "csfd-planck" and set(dust.DUST_MODES) == {"csfd-planck", "csfd-gnilc", "bh", "none"}


def dustmaps_version() -> str:
    from importlib.metadata import version

    return version("dustmaps")


def test_dustmaps_config_is_never_written(tmp_path, map_dir):
    from dustmaps.config import config

    cfg = Path(config.fname)
    before = (cfg.exists(), cfg.stat().st_mtime_ns if cfg.exists() else None)
    options = dict(config._options)
    ra, dec = sky_positions(20, seed=4)
    for mode in dust.DUST_MODES:
        dust.ebv(ra, dec, mode, data_dir=map_dir)
        dust.describe(mode)
    with pytest.raises(dust.MissingDustMapError):
        dust.check_dust_maps("csfd-gnilc", tmp_path / "elsewhere")
    assert (cfg.exists(), cfg.stat().st_mtime_ns if cfg.exists() else None) == before
    assert dict(config._options) == options
    assert "DUSTMAPS_CONFIG_FNAME" not in os.environ or Path(os.environ["DUSTMAPS_CONFIG_FNAME"]) == cfg
