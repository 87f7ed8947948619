"""Mantis Shrimp data package: bands, redshift grid, sample schema, releases, loaders, transforms and metrics.

The public API is listed in ``__all__`` and importable from here (``from mantis_data import make_loader``);
each name is imported on first use, so ``import mantis_data`` stays light (no torch until it is needed).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, ...]] = {
    "errors": ("MantisDataError", "ReleaseError", "InputDataError", "OutOfGridError"),
    "bands": ("band", "survey", "survey_bands"),
    "redshift": ("N_BINS", "redshift_class", "pmf_to_pdf", "point_estimate", "credible_interval"),
    "release": ("Release", "open_release", "verify"),
    "transforms": ("Transform", "TransformConfig", "paper_transform"),
    "loading": (
        "LoaderConfig", "MantisLoader", "WebDatasetStream", "ParquetDataset", "PlanSampler", "BatchRequest",
        "ORDERS", "make_loader", "split_redshifts", "to_device", "dist_info",
    ),
    "metrics": ("nmad", "bias", "outlier_fraction", "cde_loss", "pit", "point_metrics", "bootstrap_metrics"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mantis_data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
