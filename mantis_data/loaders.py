"""Deprecated alias of ``mantis_data.loading`` (kept for one release): import from ``mantis_data.loading``."""

from __future__ import annotations

import warnings

from .loading import *  # noqa: F403
from .loading import __all__  # noqa: F401

warnings.warn(
    "mantis_data.loaders is deprecated and will be removed in the next release; import from mantis_data.loading",
    DeprecationWarning,
    stacklevel=2,
)
