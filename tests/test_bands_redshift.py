import numpy as np
import pytest

from mantis_data import bands, redshift
from mantis_data.errors import MantisDataError, OutOfGridError


def test_nine_bands_in_wavelength_order_with_paper_pixel_scales():
    assert [b.name for b in bands.BANDS] == ["FUV", "NUV", "g", "r", "i", "z", "y", "W1", "W2"]
    wl = [b.wavelength_angstrom for b in bands.BANDS]
    assert wl == sorted(wl)
    assert bands.survey("galex").shape == (2, 32, 32) and bands.survey("galex").pixel_scale_arcsec == 1.5
    assert bands.survey("ps1").shape == (5, 170, 170) and bands.survey("ps1").pixel_scale_arcsec == 0.25
    assert bands.survey("unwise").shape == (2, 32, 32) and bands.survey("unwise").pixel_scale_arcsec == 2.75
    # every survey's bands are listed in BANDS under that survey, in order
    for name, s in bands.SURVEYS.items():
        assert [b.name for b in bands.survey_bands(name)] == list(s.bands)
        assert all(b.survey == name for b in bands.survey_bands(name))


def test_ps1_zero_point_and_unknown_names():
    assert bands.ps1_zero_point(1000.0) == pytest.approx(32.5)
    with pytest.raises(MantisDataError):
        bands.band("u")
    with pytest.raises(MantisDataError):
        bands.survey("sdss")


def test_grid_is_the_released_models():
    assert redshift.GRID.shape == (400,)
    assert redshift.GRID[0] == 0.0 and redshift.GRID[-1] == pytest.approx(1.596)
    assert np.allclose(np.diff(redshift.GRID), 0.004)
    np.testing.assert_array_equal(redshift.GRID, np.linspace(0, 1.6, 401)[:-1])


def test_class_is_nearest_grid_value_not_floor():
    z = np.array([0.001, 0.0019, 0.0021, 0.0039, 0.1, 1.5979, 1.5981, 1.59999])
    got = redshift.redshift_class(z)
    np.testing.assert_array_equal(got, [0, 0, 1, 1, 25, 399, 399, 399])
    # nearest grid value really is the nearest
    inside = np.random.default_rng(0).uniform(1e-6, 1.598, 10_000)
    cls = redshift.redshift_class(inside)
    assert np.all(np.abs(redshift.GRID[cls] - inside) <= 0.002 + 1e-12)
    # floor differs by one class in the upper half of an interval
    assert (np.floor(inside / 0.004).astype(int) != cls).mean() == pytest.approx(0.5, abs=0.02)


def test_out_of_range_is_explicit():
    bad = np.array([0.0, -0.1, 1.6, 2.0, np.nan])
    with pytest.raises(OutOfGridError, match="outside the label range"):
        redshift.redshift_class(bad)
    np.testing.assert_array_equal(redshift.redshift_class(np.r_[bad, 0.5], out_of_range="mask"), [-1] * 5 + [125])
    np.testing.assert_array_equal(redshift.in_label_range([0.0, 0.5, 1.6]), [False, True, False])
