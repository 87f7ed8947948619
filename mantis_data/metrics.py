"""Photometric-redshift metrics as the paper defines them (Sec. 6.1), with bootstrap uncertainties.

Point metrics use the scaled residuals r = (z_hat - z) / (1 + z), positive when the model overestimates,
with z_hat the expectation of the PMF (``redshift.point_estimate``). That is the sign of the code that
produced the paper's tables (pnnl/MantisShrimp ``training.py``) and of the photo-z community (LSST DESC
qp/RAIL, the B22 PS1 x WISE catalog); the paper's text writes r = (z - z_hat) / (1 + z), the opposite sign,
but its tables were computed with this one. Only the bias depends on the sign; NMAD and eta do not.

- NMAD = 1.4826 * median(|r - median(r)|)
- bias = mean(r)
- eta = percentage of galaxies with |r| > threshold (0.05 in the paper; 0.15 is the other convention)

Density metrics read each PMF as the piecewise-constant density of ``mantis_data.redshift``:

- CDE loss (Izbicki & Lee 2016) = mean_i integral p_i(z)^2 dz - 2 mean_i p_i(z_i), where p_i(z_i) is the
  density of the true class (the grid value nearest z_i, ``redshift_class``, ties to the lower class) and
  0 for a z_i where the CDF is flat: outside the label range 0 < z < 1.6, and for 1.598 < z < 1.6, above
  the last cell (``redshift.density_class``). A uniform PMF gives -1 / (400 * 0.004) = -0.625; a one-bin PMF at the true
  class gives -1 / 0.004 = -250.
- PIT = CDF_i(z_i); its histogram should be flat; ``ks_uniform`` is its KS distance from uniform.

Every metric is a function of per-galaxy numbers (r, |r| > threshold, the CDE term, the PIT), computed
once in one chunked pass over the PMFs (``galaxy_terms``). The bootstrap then resamples galaxies
(B multinomial resamples of size n, drawn as index counts, one resample's counts in memory at a time):
means are count-weighted sums, the medians of the NMAD are read off cumulative counts over the residuals
sorted once, and the KS distance off cumulative counts over the PIT sorted once. The replicates are the
statistics of the resampled sets exactly (to rounding), at O(n) per resample with no n log n sort.
Uncertainties are the standard deviation of the replicates, reported as the paper does: ``2.438(4)``.

Where the code lives (every name stays importable from here):

- ``mantis_data.metrics_galaxy``: the constants, the metrics on full arrays, ``GalaxyTerms``,
  ``galaxy_terms`` and ``point_metrics``.
- ``mantis_data.metrics_bootstrap``: ``bootstrap``, ``_Resampler`` and ``bootstrap_metrics``.
- ``mantis_data.metrics_table``: ``Estimate``, ``MetricsRow``, ``summarize``, ``metrics_table``,
  ``format_uncertainty`` and ``markdown_table``.
"""

from __future__ import annotations

from .metrics_bootstrap import _INF_BITS, _Resampler, bootstrap, bootstrap_metrics  # noqa: F401
from .metrics_galaxy import (  # noqa: F401
    DEFAULT_OUTLIER_THRESHOLD,
    METRIC_NAMES,
    NMAD_SCALE,
    GalaxyTerms,
    bias,
    cde_loss,
    galaxy_terms,
    ks_uniform,
    nmad,
    outlier_fraction,
    pit,
    pit_histogram,
    point_metrics,
    residuals,
)
from .metrics_table import (  # noqa: F401
    _TABLE_COLUMNS,
    ZERO_SPREAD,
    Estimate,
    MetricsRow,
    _json_float,
    format_uncertainty,
    markdown_table,
    metrics_table,
    summarize,
)
