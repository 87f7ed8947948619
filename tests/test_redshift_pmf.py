"""PMF -> PDF, CDF, point estimate and credible intervals over the 400-value grid (hand-computed cases)."""

import numpy as np
import pytest

from mantis_data.errors import MantisDataError
from mantis_data.redshift import (
    BIN_WIDTH,
    CELL_EDGES,
    GRID,
    N_BINS,
    InvalidPMFError,
    cdf_at,
    credible_interval,
    density_class,
    pdf_at,
    pmf_to_pdf,
    point_estimate,
    redshift_class,
    validate_pmf,
)


def one_hot(k, n=None):
    """PMFs with all their mass in class k (one row per k)."""
    k = np.atleast_1d(k)
    p = np.zeros((k.size, N_BINS))
    p[np.arange(k.size), k] = 1.0
    return p


@pytest.fixture
def two_point():
    """Mass 0.25 at grid value 0.04 (class 10) and 0.75 at 0.08 (class 20)."""
    p = np.zeros(N_BINS)
    p[10], p[20] = 0.25, 0.75
    return p


def test_grid_constants_unchanged():
    assert N_BINS == 400 and BIN_WIDTH == pytest.approx(0.004)
    assert GRID[0] == 0.0 and GRID[1] == pytest.approx(0.004) and GRID[-1] == pytest.approx(1.596)
    assert CELL_EDGES.shape == (401,)
    assert CELL_EDGES[0] == pytest.approx(-0.002) and CELL_EDGES[-1] == pytest.approx(1.598)
    np.testing.assert_allclose(0.5 * (CELL_EDGES[1:] + CELL_EDGES[:-1]), GRID, atol=1e-15)


def test_cells_match_redshift_class():
    z = np.random.default_rng(0).uniform(0.0001, 1.5979, 10_000)
    cell = np.searchsorted(CELL_EDGES, z, side="right") - 1
    np.testing.assert_array_equal(cell, redshift_class(z))


def test_pdf_integrates_to_one_and_keeps_shape_and_dtype():
    rng = np.random.default_rng(1)
    pmf = rng.dirichlet(np.full(N_BINS, 0.3), size=(2, 3)).astype(np.float32)
    pdf = pmf_to_pdf(pmf)
    assert pdf.shape == (2, 3, N_BINS) and pdf.dtype == np.float32
    np.testing.assert_allclose(pdf.astype(np.float64).sum(axis=-1) * BIN_WIDTH, 1.0, rtol=1e-6)
    uniform = np.full(N_BINS, 1 / N_BINS)
    np.testing.assert_allclose(pmf_to_pdf(uniform), 0.625)  # 1 / (400 * 0.004)


def test_cdf_hand_values(two_point):
    z = np.array([-1.0, 0.0, 0.04, 0.042, 0.06, 0.08, 0.081, 2.0])
    # cell 10 is [0.038, 0.042), cell 20 is [0.078, 0.082); the CDF is linear inside each cell
    expected = [0.0, 0.0, 0.125, 0.25, 0.25, 0.25 + 0.375, 0.25 + 0.75 * 0.75, 1.0]
    np.testing.assert_allclose(cdf_at(np.broadcast_to(two_point, (8, N_BINS)), z), expected, atol=1e-12)
    # a scalar z broadcasts over many PMFs
    np.testing.assert_allclose(cdf_at(np.stack([two_point, two_point]), 0.04), [0.125, 0.125])


def test_cdf_is_cumulative_sum_at_edges_linear_between_and_monotone():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.full(N_BINS, 0.5))
    at_edges = cdf_at(np.broadcast_to(p, (N_BINS + 1, N_BINS)), CELL_EDGES)
    np.testing.assert_allclose(at_edges, np.concatenate([[0.0], np.cumsum(p)]), atol=1e-12)
    # at a grid value (a cell's centre) the CDF is half way between the cell's edges
    centre = cdf_at(np.broadcast_to(p, (N_BINS, N_BINS)), GRID)
    np.testing.assert_allclose(centre, 0.5 * (at_edges[1:] + at_edges[:-1]), atol=1e-12)
    zz = np.linspace(-0.1, 1.7, 5001)
    c = cdf_at(np.broadcast_to(p, (zz.size, N_BINS)), zz)
    assert np.all(np.diff(c) >= 0) and c[0] == 0.0 and c[-1] == pytest.approx(1.0)


def test_point_estimate(two_point):
    assert point_estimate(two_point) == pytest.approx(0.25 * 0.04 + 0.75 * 0.08)  # 0.07
    np.testing.assert_allclose(point_estimate(one_hot([0, 25, 399])), [0.0, 0.1, 1.596])
    assert point_estimate(np.full(N_BINS, 1 / N_BINS)) == pytest.approx(0.798)
    # a PMF summing to 1 - 1e-6 (float32 softmax) is rescaled, not biased low
    assert point_estimate(one_hot(100)[0] * (1 - 1e-6)) == pytest.approx(0.4, rel=1e-12)


def test_pdf_at_uses_the_label_rule(two_point):
    z = np.array([0.0395, 0.0419, 0.0421, 0.08, 1.7, -0.001])
    np.testing.assert_allclose(
        pdf_at(np.broadcast_to(two_point, (6, N_BINS)), z), [62.5, 62.5, 0.0, 187.5, 0.0, 0.0]
    )


def test_credible_interval_of_a_delta_and_a_two_point_pmf(two_point):
    lo, hi = credible_interval(one_hot([25, 300]), 0.9)
    np.testing.assert_allclose(lo, CELL_EDGES[[25, 300]] + 0.05 * BIN_WIDTH)
    np.testing.assert_allclose(hi, CELL_EDGES[[25, 300]] + 0.95 * BIN_WIDTH)
    lo, hi = credible_interval(two_point, 0.5)
    # CDF reaches 0.25 at the top of cell 10 and 0.75 two-thirds into cell 20
    assert lo == pytest.approx(0.042) and hi == pytest.approx(0.078 + 0.004 * (0.5 / 0.75))


@pytest.mark.parametrize("level", [0.68, 0.9, 0.95])
def test_credible_interval_holds_the_requested_mass(level):
    rng = np.random.default_rng(3)
    pmf = rng.dirichlet(np.full(N_BINS, 0.2), size=200).astype(np.float32)
    lo, hi = credible_interval(pmf, level)
    assert np.all(lo <= hi)
    np.testing.assert_allclose(cdf_at(pmf, hi) - cdf_at(pmf, lo), level, atol=1e-6)
    np.testing.assert_allclose(cdf_at(pmf, lo), (1 - level) / 2, atol=1e-6)
    with pytest.raises(ValueError):
        credible_interval(pmf, 1.5)


def test_validation_errors_are_clear():
    good = np.full((3, N_BINS), 1 / N_BINS, dtype=np.float32)
    assert validate_pmf(good) is good
    with pytest.raises(InvalidPMFError, match=r"shape \(\.\.\., 400\).*\(3, 401\)"):
        point_estimate(np.full((3, 401), 1 / 401))
    bad = good.copy()
    bad[1] *= 2
    with pytest.raises(InvalidPMFError, match="row 1 sums to") as info:
        cdf_at(bad, 0.5)
    assert isinstance(info.value, MantisDataError) and isinstance(info.value, ValueError)
    neg = good.astype(np.float64)
    neg[2, 0] -= 0.1
    neg[2, 1] += 0.1
    with pytest.raises(InvalidPMFError, match="row 2 has negative"):
        pmf_to_pdf(neg)
    nan = good.copy()
    nan[0, 5] = np.nan
    with pytest.raises(InvalidPMFError, match="row 0"):
        validate_pmf(nan)
    logits = np.random.default_rng(0).normal(size=(2, N_BINS))
    with pytest.raises(InvalidPMFError, match="softmax"):
        point_estimate(logits)


def test_ties_go_to_the_lower_class_as_the_released_argmin():
    """Three-decimal catalogue redshifts: exact midpoints (0.002 + 0.004 k) go to the lower class."""
    from fractions import Fraction
    from math import ceil

    z = np.round(np.arange(1, 1600) / 1000, 3)  # 0.001 ... 1.599
    exact = [ceil(Fraction(f"{v:.3f}") / Fraction(4, 1000) - Fraction(1, 2)) for v in z]  # nearest, ties down
    np.testing.assert_array_equal(redshift_class(z), np.minimum(exact, N_BINS - 1))
    ties = np.round(0.002 + 0.004 * np.arange(399), 3)
    np.testing.assert_array_equal(redshift_class(ties), np.arange(399))
    # the released code's rule on the same numbers: argmin of the distance (first of equal distances)
    milli = np.arange(1, 1600)  # z in thousandths, exactly; the grid is 4 k thousandths
    first = np.argmin(np.abs(4 * np.arange(N_BINS)[None, :] - milli[:, None]), axis=1)
    np.testing.assert_array_equal(redshift_class(z), first)
    # numpy's rint (round half to even, after float rounding of z / 0.004) sends about half the ties up:
    # it disagrees on ~11% of three-decimal redshifts
    assert 0.09 < (np.rint(z / 0.004).clip(max=399) != redshift_class(z)).mean() < 0.13


def test_density_is_the_derivative_of_the_cdf_up_to_the_top_edge():
    """pdf_at, the CDE term's density, is dCDF/dz everywhere, including 1.598 < z < 1.6 (where it is 0)."""
    from mantis_data import metrics as M

    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.full(N_BINS, 0.5))
    p[-1] = 0.2  # weight in the last cell, so that a wrong top edge shows
    p /= p.sum()
    z = np.concatenate([rng.uniform(0.003, 1.597, 200), [1.5975, 1.5985, 1.599, 1.5999]])
    h = 1e-7
    cdf = lambda v: cdf_at(np.broadcast_to(p, (v.size, N_BINS)), v)  # noqa: E731
    numeric = (cdf(z + h) - cdf(z - h)) / (2 * h)
    far = np.abs((z - CELL_EDGES[0]) / BIN_WIDTH - np.rint((z - CELL_EDGES[0]) / BIN_WIDTH)) > 1e-3  # not at an edge
    dens = pdf_at(np.broadcast_to(p, (z.size, N_BINS)), z)
    np.testing.assert_allclose(dens[far], numeric[far], rtol=1e-5, atol=1e-6)
    top = z > 1.598
    assert top.sum() == 3 and np.all(dens[top] == 0) and np.all(cdf(z[top]) == pytest.approx(1.0))
    np.testing.assert_array_equal(redshift_class(z[top]), [399, 399, 399])  # still class 399 for training
    # the CDE term uses that density: integral p^2 dz - 2 p(z) with p(z) = 0 above 1.598
    t = M.galaxy_terms(z, np.broadcast_to(p, (z.size, N_BINS)))
    int_p2 = (p**2).sum() / BIN_WIDTH
    np.testing.assert_allclose(t.cde_term, int_p2 - 2 * dens, rtol=1e-10)
    assert np.all(t.cde_term[top] == pytest.approx(int_p2)) and t.in_label_range.all()
    assert t.cde_term[z == 1.5975][0] == pytest.approx(int_p2 - 2 * p[-1] / BIN_WIDTH)
    # z exactly at the top edge 1.598 is a tie: class 399, whose cell ends there
    assert density_class(1.598) == 399 and density_class(1.5981) == -1 and density_class(0.0) == -1
