"""A mock sky for demos and tests, indistinguishable in format from the real survey inputs.

``sky.MockSky``: galaxies whose colours follow redshift; ``catalogs.write_catalogs``: all eight survey
catalogs with planted defects and ``truth.parquet``; ``cutouts.render_ps1`` / ``cutouts.render_legacy``:
service-shaped FITS responses; ``cutouts.write_cutouts``: a cutout cache with planted faults.
"""

from .sky import MockSky

__all__ = ["MockSky"]
