"""Mantis Shrimp data package: bands, redshift grid, sample schema, releases, loaders and metrics."""

__version__ = "0.1.0"
