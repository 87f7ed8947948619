"""Photo-z metrics: hand-computed cases, the fast bootstrap against direct resampling, paper-style output."""

import math

import numpy as np
import pytest

from mantis_data import metrics as M
from mantis_data.redshift import BIN_WIDTH, CELL_EDGES, N_BINS, point_estimate, redshift_class


def one_hot(k):
    p = np.zeros((len(k), N_BINS))
    p[np.arange(len(k)), k] = 1.0
    return p


# ---------------------------------------------------------------- acceptance 1: hand-computed cases


def test_delta_pmf_at_the_true_bin():
    z = np.array([0.1, 0.1015, 0.1025, 0.5, 1.2])
    k = redshift_class(z)
    np.testing.assert_array_equal(k, [25, 25, 26, 125, 300])
    pmf = one_hot(k)
    # cell k is [GRID[k] - 0.002, GRID[k] + 0.002); the CDF rises linearly across it
    pit = M.pit(pmf, z)
    np.testing.assert_allclose(pit, [0.5, 0.875, 0.125, 0.5, 0.5], atol=1e-9)
    np.testing.assert_allclose(pit, (z - CELL_EDGES[k]) / BIN_WIDTH, atol=1e-9)
    assert np.all((pit >= 0) & (pit < 1))
    # one-bin density of height 1/d: integral p^2 = 1/d, p(z_true) = 1/d, loss = -1/d = -250
    assert M.cde_loss(pmf, z) == pytest.approx(-250.0)
    terms = M.galaxy_terms(z, pmf)
    np.testing.assert_allclose(terms.cde_term, -250.0)
    # the same delta one class off scores integral p^2 only: +250
    assert M.cde_loss(one_hot(k + 1), z) == pytest.approx(250.0)


def test_uniform_pmf_cde_loss():
    z = np.array([0.05, 0.5, 1.0, 1.5])
    pmf = np.full((4, N_BINS), 1 / N_BINS, dtype=np.float32)
    assert M.cde_loss(pmf, z) == pytest.approx(-1 / (400 * 0.004))  # -0.625
    assert M.cde_loss(pmf, z) == pytest.approx(-0.625)
    # outside the label range the model's density is 0: only integral p^2 = 0.625 remains
    assert M.cde_loss(pmf[:2], [0.5, 1.7]) == pytest.approx((-0.625 + 0.625) / 2)


def test_known_residuals_nmad_bias_eta():
    r = np.array([-0.10, -0.02, 0.00, 0.01, 0.03, 0.06, 0.20])
    # median 0.01; |r - 0.01| sorted: 0, 0.01, 0.02, 0.03, 0.05, 0.11, 0.19 -> median 0.03
    assert M.nmad(r) == pytest.approx(1.4826 * 0.03)
    assert M.bias(r) == pytest.approx(0.18 / 7)
    assert M.outlier_fraction(r) == pytest.approx(100 * 3 / 7)  # 0.10, 0.06, 0.20
    assert M.outlier_fraction(r, threshold=0.15) == pytest.approx(100 * 1 / 7)
    # even n: median 0.015; deviations 0.005, 0.005, 0.015, 0.085 -> median 0.01
    assert M.nmad([0.0, 0.01, 0.02, 0.10]) == pytest.approx(0.014826)
    # the residuals come back from (z, z_hat): r = (z_hat - z) / (1 + z)
    z = np.linspace(0.1, 1.3, r.size)
    np.testing.assert_allclose(M.residuals(z, z + r * (1 + z)), r, atol=1e-15)
    assert M.residuals(1.0, 1.1) == pytest.approx(0.05)  # positive when z_hat is high (community sign)
    assert M.residuals(1.0, 0.9) == pytest.approx(-0.05)


def test_outlier_threshold_is_strict():
    assert M.outlier_fraction([0.05, -0.05, 0.0500001, -0.2]) == pytest.approx(50.0)


def test_pit_histogram_and_ks():
    counts, edges = M.pit_histogram([0.0, 0.01, 0.5, 0.99, 1.0], bins=10)
    np.testing.assert_array_equal(counts, [2, 0, 0, 0, 0, 1, 0, 0, 0, 2])
    np.testing.assert_allclose(edges, np.linspace(0, 1, 11))
    assert M.ks_uniform([0.5]) == pytest.approx(0.5)
    assert M.ks_uniform([0.25, 0.75]) == pytest.approx(0.25)
    assert M.ks_uniform([0.1, 0.2, 0.3]) == pytest.approx(0.7)  # F_n = 1 at 0.3
    x = np.random.default_rng(0).uniform(size=1000) ** 1.3
    i = np.arange(1, x.size + 1)
    xs = np.sort(x)
    assert M.ks_uniform(x) == pytest.approx(max(np.max(i / x.size - xs), np.max(xs - (i - 1) / x.size)))


def test_galaxy_terms_match_the_direct_functions():
    rng = np.random.default_rng(4)
    n = 300
    z = rng.uniform(0.01, 1.55, n)
    pmf = rng.dirichlet(np.full(N_BINS, 0.1), size=n).astype(np.float32)
    t = M.galaxy_terms(z, pmf)
    np.testing.assert_allclose(t.z_hat, point_estimate(pmf), rtol=1e-12)
    np.testing.assert_allclose(t.r, (t.z_hat - z) / (1 + z), rtol=1e-12)
    np.testing.assert_allclose(t.pit, M.pit(pmf, z), rtol=1e-12)
    p = pmf.astype(np.float64)
    p /= p.sum(axis=1, keepdims=True)
    direct = (p**2).sum(axis=1) / BIN_WIDTH - 2 * p[np.arange(n), redshift_class(z)] / BIN_WIDTH
    np.testing.assert_allclose(t.cde_term, direct, rtol=1e-10)
    assert M.cde_loss(pmf, z) == pytest.approx(direct.mean(), rel=1e-10)
    with pytest.raises(ValueError, match="non-finite"):
        M.galaxy_terms(np.where(np.arange(n) == 3, np.nan, z), pmf)
    with pytest.raises(ValueError, match="rows"):
        M.galaxy_terms(z[:-1], pmf)


# ---------------------------------------------------------------- the fast bootstrap is exact


def _direct(terms, order, counts, thr=0.05):
    rr = np.repeat(terms.r[order], counts)
    return {
        "nmad": M.nmad(rr),
        "bias": M.bias(rr),
        "outlier_fraction": M.outlier_fraction(rr, thr),
        "cde_loss": np.repeat(terms.cde_term[order], counts).mean(),
        "pit_ks": M.ks_uniform(np.repeat(terms.pit[order], counts)),
    }


@pytest.mark.parametrize("n", [1, 2, 5, 64, 501])
def test_replicates_equal_metrics_of_the_resampled_set(n):
    rng = np.random.default_rng(n)
    r = rng.normal(0, 0.05, n)
    if n > 10:
        r[: n // 3] = np.round(r[: n // 3], 2)  # ties
    terms = M.GalaxyTerms(
        np.ones(n), np.ones(n), r, np.round(rng.uniform(size=n), 2), rng.normal(size=n), np.ones(n, bool)
    )
    res = M._Resampler(terms, 0.05)
    order = np.argsort(r, kind="stable")
    counts = np.stack([np.ones(n, int)] + [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(6)])
    reps = res.replicates(counts)
    for j, c in enumerate(counts):
        for name, value in _direct(terms, order, c).items():
            assert reps[name][j] == pytest.approx(value, rel=1e-12, abs=1e-15), (name, j)
    # counts of all ones: the full-sample values
    for name, value in M.point_metrics(terms).items():
        assert reps[name][0] == pytest.approx(value, rel=1e-12, abs=1e-15)


def test_bootstrap_is_reproducible_and_independent_of_batch_size():
    rng = np.random.default_rng(5)
    n = 400
    terms = M.GalaxyTerms(
        np.ones(n),
        np.ones(n),
        rng.normal(0, 0.03, n),
        rng.uniform(size=n),
        rng.normal(size=n),
        np.ones(n, bool),
    )
    a = M.bootstrap_metrics(terms, B=50, seed=7)
    b = M.bootstrap_metrics(terms, B=50, seed=7, max_elements=n)  # one resample per batch
    c = M.bootstrap_metrics(terms, B=50, seed=8)
    for name in M.METRIC_NAMES:
        assert a[name].shape == (50,)
        np.testing.assert_array_equal(a[name], b[name])
        assert not np.array_equal(a[name], c[name])


# ---------------------------------------------------------------- acceptance 2: coverage of the standard error


def test_bootstrap_standard_error_of_a_gaussian_mean():
    rng = np.random.default_rng(6)
    n, sigma = 10_000, 2.0
    x = rng.normal(1.0, sigma, n)
    se = x.std(ddof=1) / math.sqrt(n)  # analytic standard error of the mean (~0.02)
    terms = M.GalaxyTerms(np.ones(n), np.ones(n), x, rng.uniform(size=n), x.copy(), np.ones(n, bool))
    reps = M.bootstrap_metrics(terms, B=1000, seed=0)
    for name in ("bias", "cde_loss"):  # both are means of x here
        est = M.Estimate.from_replicates(x.mean(), reps[name])
        assert est.error == pytest.approx(se, rel=0.10)
        assert (est.high - est.low) / 2 == pytest.approx(1.959964 * se, rel=0.10)
        assert est.low < x.mean() < est.high
    generic = M.bootstrap(np.mean, x, B=1000, seed=1, max_elements=50_000)
    assert generic.std(ddof=1) == pytest.approx(se, rel=0.10)


def test_fast_and_generic_bootstrap_agree_on_nmad_and_ks():
    rng = np.random.default_rng(9)
    n = 5000
    r = rng.standard_t(3, n) * 0.02
    p = rng.uniform(size=n) ** 1.2
    terms = M.GalaxyTerms(np.ones(n), np.ones(n), r, p, np.zeros(n), np.ones(n, bool))
    fast = M.bootstrap_metrics(terms, B=500, seed=0)
    assert fast["nmad"].std() == pytest.approx(M.bootstrap(M.nmad, r, B=500, seed=1).std(), rel=0.2)
    assert fast["pit_ks"].std() == pytest.approx(M.bootstrap(M.ks_uniform, p, B=500, seed=1).std(), rel=0.2)
    assert fast["nmad"].mean() == pytest.approx(M.nmad(r), rel=0.02)


# ---------------------------------------------------------------- reporting


@pytest.mark.parametrize(
    ("value", "error", "kwargs", "text"),
    [
        (2.438, 0.004, {}, "2.438(4)"),
        (0.02438, 0.00004, {"scale": 1e-2}, "2.438(4)"),
        (0.01151, 0.000094, {"scale": 1e-2}, "1.151(9)"),
        (1.151, 0.0096, {}, "1.15(1)"),
        (-7.45, 0.07, {}, "-7.45(7)"),
        (17.6, 0.04, {}, "17.60(4)"),
        (-25.9, 0.1, {}, "-25.9(1)"),
        (-0.00019, 0.00004, {"scale": 1e-3}, "-0.19(4)"),
        (-5.2, 1.0, {}, "-5(1)"),
        (123.4, 12.0, {}, "120(10)"),
        (2.4381, 0.0043, {"digits": 2}, "2.4381(43)"),
        (-0.0004, 0.01, {}, "0.00(1)"),
        (2.438, 0.0, {}, "2.438"),
        (2.438, math.nan, {}, "2.438"),
        (math.nan, 0.1, {}, "nan"),
    ],
)
def test_format_uncertainty(value, error, kwargs, text):
    assert M.format_uncertainty(value, error, **kwargs) == text


def test_metrics_table_subpopulations():
    rng = np.random.default_rng(10)
    n = 2000
    z = rng.uniform(0.02, 1.5, n)
    centre = np.clip(z + rng.normal(0, 0.03, n), 0.001, 1.59)
    pmf = one_hot(redshift_class(centre))
    pmf = 0.9 * pmf + 0.1 * np.roll(pmf, 3, axis=1)
    survey = rng.choice(["SDSS", "DESI", "GAMA"], n)
    masks = {"SDSS": survey == "SDSS", "z < 0.5": z < 0.5, "empty": np.zeros(n, bool)}
    rows = M.metrics_table(z, pmf, masks=masks, B=100, seed=3)
    assert [row.name for row in rows] == ["all", "SDSS", "z < 0.5", "empty"]
    zhat = point_estimate(pmf)
    for row, mask in zip(rows, [np.ones(n, bool), masks["SDSS"], masks["z < 0.5"]], strict=False):
        r = M.residuals(z[mask], zhat[mask])
        assert row.n == mask.sum()
        assert row.nmad.value == pytest.approx(M.nmad(r), rel=1e-12)
        assert row.bias.value == pytest.approx(M.bias(r), rel=1e-12)
        assert row.outlier_fraction.value == pytest.approx(M.outlier_fraction(r), rel=1e-12)
        assert row.cde_loss.value == pytest.approx(M.cde_loss(pmf[mask], z[mask]), rel=1e-12)
        assert row.pit_ks.value == pytest.approx(M.ks_uniform(M.pit(pmf[mask], z[mask])), rel=1e-12)
        assert row.nmad.error > 0 and row.nmad.low <= row.nmad.value <= row.nmad.high
    assert rows[3].n == 0 and math.isnan(rows[3].nmad.value)
    d = rows[0].to_dict()
    assert d["n"] == n and set(M.METRIC_NAMES) <= set(d) and d["bootstrap"] == 100
    table = M.markdown_table(rows)
    assert table.count("\n") == 2 + len(rows)
    assert "| SDSS |" in table and "NMAD (×10⁻²)" in table
    # threshold 0.15 as a parameter
    rows15 = M.metrics_table(z, pmf, B=0, outlier_threshold=0.15)
    r = M.residuals(z, zhat)
    assert rows15[0].outlier_fraction.value == pytest.approx(M.outlier_fraction(r, 0.15))
    assert math.isnan(rows15[0].nmad.error)
