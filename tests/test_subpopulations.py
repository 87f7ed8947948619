"""The cross-match and the comparison catalog's Gaussian densities of mantis_data.subpopulations."""

import numpy as np
import pytest

from mantis_data import metrics as M
from mantis_data import subpopulations as S
from mantis_data.redshift import CELL_EDGES


def _brute(ra1, dec1, ra2, dec2, radius):
    v1, v2 = S._unit(ra1, dec1), S._unit(ra2, dec2)
    sep = np.degrees(np.arccos(np.clip(v1 @ v2.T, -1, 1))) * 3600
    best = np.where(sep.min(axis=1) <= radius, sep.argmin(axis=1), -1)
    return best, sep.min(axis=1)


def test_match_nearest_equals_brute_force_across_ra_zero_and_the_pole():
    rng = np.random.default_rng(0)
    n = 600
    ra2 = np.r_[rng.uniform(0, 0.05, n // 3), rng.uniform(359.95, 360, n // 3), rng.uniform(0, 360, n // 3)] % 360
    dec2 = np.r_[rng.uniform(-0.05, 0.05, 2 * (n // 3)), rng.uniform(89.97, 90, n // 3)]
    pick = rng.choice(n, 300, replace=False)
    off = rng.uniform(0, 3, 300) / 3600  # 0-3 arcsec away: some inside 1.5", some outside
    pa = rng.uniform(0, 2 * np.pi, 300)
    dec1 = np.clip(dec2[pick] + off * np.cos(pa), -90, 90)
    ra1 = (ra2[pick] + off * np.sin(pa) / np.cos(np.radians(dec1))) % 360
    got, sep = S.match_nearest(ra1, dec1, ra2, dec2, 1.5, chunk=64)  # small chunks: many batches
    want, wsep = _brute(ra1, dec1, ra2, dec2, 1.5)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(sep[got >= 0], wsep[got >= 0], atol=5e-3)  # arccos near 1: ~1e-3" precise
    assert 50 < (got >= 0).sum() < 300


def test_gaussian_terms_without_scipy_match_scipy(monkeypatch):
    z = np.array([0.1, 0.5, 1.2, 1.59])
    mean, sigma = z + 0.01, np.array([0.02, 0.05, 0.1, 0.03])
    with_scipy = S.gaussian_terms(z, mean, sigma)
    x = np.linspace(-6, 6, 1001)
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    fallback = S.gaussian_terms(z, mean, sigma)
    cdf = S._normal_cdf(x)
    monkeypatch.undo()
    from scipy.special import ndtr

    assert not np.array_equal(cdf, ndtr(x))  # the fallback really ran
    np.testing.assert_allclose(cdf, ndtr(x), atol=2e-7)
    np.testing.assert_allclose(fallback.pit, with_scipy.pit, atol=1e-5)
    np.testing.assert_allclose(fallback.cde_term, with_scipy.cde_term, rtol=1e-4)
    # the point estimate is the catalog's own z_phot, not the discretised mean
    np.testing.assert_array_equal(with_scipy.z_hat, mean)
    np.testing.assert_allclose(with_scipy.r, M.residuals(z, mean))
    # a narrow Gaussian at the truth: PIT near 0.5 (up to the cell's width), CDE term near -2 / cell width
    narrow = S.gaussian_terms(np.array([0.5]), np.array([0.5]), np.array([1e-4]))
    assert narrow.pit[0] == pytest.approx(0.5, abs=0.01)
    assert narrow.cde_term[0] == pytest.approx(-1 / np.diff(CELL_EDGES)[0], rel=0.01)
