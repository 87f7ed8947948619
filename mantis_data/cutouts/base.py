"""The cutout source interface: one target in, three native-resolution stamps or recorded failures out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Stamps:
    """The three survey cutouts of one target, in the release's band order (mantis_data.bands).

    Each image is float32 of ``SURVEYS[s].shape`` holding linear flux as the service returned it
    (NaN kept: quality checks happen in assemble), or None when that survey failed; ``failures`` then
    holds a short reason per failed survey ("missing", "unreadable: ...", "bad_shape: ...").
    ``ps1_zp`` is the AB zero point of each Pan-STARRS band, 25 + 2.5 log10(EXPTIME), from its header.
    """

    target_id: str
    galex: np.ndarray | None = None
    ps1: np.ndarray | None = None
    unwise: np.ndarray | None = None
    ps1_zp: np.ndarray | None = None
    failures: dict[str, str] = field(default_factory=dict)


class CutoutSource(Protocol):
    """Anything that returns the stamps of a target."""

    def get(self, target_id: str, ra: float, dec: float) -> Stamps:
        """The stamps of one target at (ra, dec) in degrees ICRS."""
        ...
