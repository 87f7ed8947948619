"""Transform configuration: flux scalings, crops, ``TransformConfig``, the released presets, ``AugmentParams``.

``AsinhScale`` and ``LinearScale`` (the per-survey flux scalings), ``crop_pixels``, the band ablations
``ABLATIONS``, ``TransformConfig`` (every parameter of ``mantis_data.transforms.Transform``) with the
released model's presets ``PAPER_EARLY`` and ``PAPER_LATE`` (the only place their numbers are written),
and ``AugmentParams`` (per-sample rotation angle and flips). ``mantis_data.transforms`` re-exports all
of them; its docstring describes the transform they configure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch

from .bands import BANDS, SURVEY_ORDER, SURVEYS
from .errors import MantisDataError

__all__ = [
    "ABLATIONS",
    "AUGMENT_PER",
    "PAPER_EARLY",
    "PAPER_LATE",
    "AsinhScale",
    "AugmentParams",
    "LinearScale",
    "TransformConfig",
    "crop_pixels",
    "preset_for",
]


# --------------------------------------------------------------------------------------------------
# Flux scalings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AsinhScale:
    """Lupton quasi-logarithmic scale ``asinh(alpha * q * flux) / q``; results below ``floor`` set to ``floor``.

    ``floor=None`` keeps negative values (the scale is odd in flux).
    """

    alpha: float
    q: float
    floor: float | None = 0.0

    def apply_(self, x: torch.Tensor, work: torch.Tensor | None = None) -> torch.Tensor:
        """Scale ``x`` (linear flux, survey units) in place and return it (dimensionless).

        On the CPU (float32) this runs numpy's vectorised ``arcsinh`` (what the released code called, and
        ~3x faster than torch's CPU ``asinh``); elsewhere ``torch.asinh``. ``work`` is unused (kept for
        callers that pass a scratch tensor).
        """
        a = self.alpha * self.q
        if x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad:
            v = x.numpy()
            np.multiply(v, np.float32(a), out=v)
            np.arcsinh(v, out=v)
            np.multiply(v, np.float32(1.0 / self.q), out=v)
            if self.floor is not None:
                np.maximum(v, np.float32(self.floor), out=v)
            return x
        x.mul_(a).asinh_().div_(self.q)
        return x if self.floor is None else x.clamp_(min=self.floor)


@dataclass(frozen=True)
class LinearScale:
    """Linear scale ``flux / scale`` clipped to [lo, hi] (None: that side unclipped)."""

    scale: float
    lo: float | None = 0.0
    hi: float | None = 1.0

    def apply_(self, x: torch.Tensor) -> torch.Tensor:
        """Scale ``x`` (linear flux, survey units) in place; return it (dimensionless)."""
        x.div_(self.scale)
        if self.lo is not None or self.hi is not None:
            x.clamp_(min=self.lo, max=self.hi)
        return x


Scale = AsinhScale | LinearScale


# --------------------------------------------------------------------------------------------------
# Configuration and presets
# --------------------------------------------------------------------------------------------------

_BAND_SURVEY: dict[str, str] = {b.name: b.survey for b in BANDS}

ABLATIONS: dict[str, tuple[str, ...]] = {
    "optical": SURVEYS["ps1"].bands,
    "optical+uv": SURVEYS["galex"].bands + SURVEYS["ps1"].bands,
    "optical+ir": SURVEYS["ps1"].bands + SURVEYS["unwise"].bands,
    "all": tuple(b.name for b in BANDS),
}
"""The paper's band-utilisation ablations: band names kept by each (order does not matter)."""


AUGMENT_PER: tuple[str, ...] = ("batch", "galaxy")
"""Granularity of the random augmentation: one draw per batch (the released code) or per galaxy."""


def crop_pixels(arcsec: float, survey: str) -> int:
    """Crop side in pixels (nearest integer) spanning ``arcsec`` arcsec in ``survey``'s stored pixels."""
    if survey not in SURVEYS:
        raise MantisDataError(f"unknown survey {survey!r}; known surveys: {', '.join(SURVEYS)}")
    return max(1, int(round(arcsec / SURVEYS[survey].pixel_scale_arcsec)))


@dataclass(frozen=True)
class TransformConfig:
    """Every parameter of the transform. Build variants with ``dataclasses.replace`` or the ``with_*`` helpers.

    fusion: "early" (one stacked ``image``) or "late" (``ps1``, ``galex``, ``unwise`` kept apart).
    scaling: flux scaling per survey.
    crop: centre-crop side in pixels per survey (None: keep the stored size, no crop).
    resize: early fusion: side of the common pixel grid (None: the PS1 crop side).
    channels: output channel order as band names (all 9 bands, each once).
    bands: bands kept (ablation); None keeps all. ``ablate="drop"`` removes the other bands' channels
        (and surveys with none left: they are not read either), ``"zero"`` keeps the channels, set to 0.
    rotate: random rotation by a uniform angle in [0, 360) degrees (training only).
    hflip_p, vflip_p: probability of a horizontal / vertical flip (training only).
    augment_per: "batch" (one angle and one flip pair for the whole batch: the released code) or
        "galaxy" (drawn for each galaxy: more varied gradients per step, no longer the released recipe).
    antialias: antialiased bilinear resize (matters only when shrinking).
    """

    fusion: str
    scaling: Mapping[str, Scale]
    crop: Mapping[str, int | None]
    channels: tuple[str, ...]
    resize: int | None = None
    bands: tuple[str, ...] | None = None
    ablate: str = "drop"
    rotate: bool = True
    hflip_p: float = 0.5
    vflip_p: float = 0.5
    augment_per: str = "batch"
    antialias: bool = True

    def __post_init__(self) -> None:
        if self.fusion not in ("early", "late"):
            raise MantisDataError(f"fusion must be 'early' or 'late', not {self.fusion!r}")
        if self.augment_per not in AUGMENT_PER:
            raise MantisDataError(f"augment_per must be one of {AUGMENT_PER}, not {self.augment_per!r}")
        if self.ablate not in ("drop", "zero"):
            raise MantisDataError(f"ablate must be 'drop' or 'zero', not {self.ablate!r}")
        names = [b.name for b in BANDS]
        if sorted(self.channels) != sorted(names):
            raise MantisDataError(f"channels must list the 9 bands {names} once each; got {list(self.channels)}")
        for s in SURVEY_ORDER:
            if s not in self.scaling or s not in self.crop:
                raise MantisDataError(f"scaling and crop need an entry for every survey {SURVEY_ORDER}; {s!r} missing")
            k = self.crop[s]
            if k is not None and not 1 <= k <= SURVEYS[s].cutout_size:
                raise MantisDataError(f"crop for {s} must be 1..{SURVEYS[s].cutout_size} pixels or None, not {k}")
        if self.bands is not None:
            unknown = [b for b in self.bands if b not in names]
            if unknown or not self.bands:
                raise MantisDataError(f"bands must be a non-empty subset of {names}; unknown: {unknown}")
        for p in (self.hflip_p, self.vflip_p):
            if not 0.0 <= p <= 1.0:
                raise MantisDataError(f"flip probabilities must be in [0, 1], not {p}")

    def with_crop_arcsec(self, arcsec: float, surveys: tuple[str, ...] = SURVEY_ORDER) -> TransformConfig:
        """A copy with crops spanning ``arcsec`` arcsec (rounded to whole pixels) in ``surveys``."""
        crop = dict(self.crop)
        for s in surveys:
            crop[s] = crop_pixels(arcsec, s)
        return replace(self, crop=crop)

    def with_bands(self, selection: str | tuple[str, ...], ablate: str | None = None) -> TransformConfig:
        """A copy keeping only ``selection`` (a name in ``ABLATIONS`` or band names)."""
        if isinstance(selection, str):
            if selection not in ABLATIONS:
                raise MantisDataError(f"unknown ablation {selection!r}; known: {', '.join(ABLATIONS)}")
            selection = ABLATIONS[selection]
        return replace(self, bands=tuple(selection), ablate=ablate or self.ablate)

    @property
    def kept_channels(self) -> tuple[str, ...]:
        """Output channels (band names) in order: ``channels`` filtered by ``bands`` when ablate='drop'."""
        if self.bands is None or self.ablate == "zero":
            return self.channels
        return tuple(c for c in self.channels if c in self.bands)

    @property
    def surveys(self) -> tuple[str, ...]:
        """Surveys whose images the transform reads (those with a kept band)."""
        kept = set(self.bands if self.bands is not None and self.ablate == "drop" else self.channels)
        return tuple(s for s in SURVEY_ORDER if any(_BAND_SURVEY[b] == s for b in kept))

    def out_size(self, survey: str) -> int:
        """Side in pixels of ``survey``'s crop (its stored size when not cropped)."""
        k = self.crop[survey]
        return SURVEYS[survey].cutout_size if k is None else int(k)

    @property
    def grid(self) -> int:
        """Early fusion: side of the common grid in pixels."""
        return int(self.resize) if self.resize is not None else self.out_size("ps1")


# The released model's preset: every number of it is written here and nowhere else.
PAPER_EARLY = TransformConfig(
    fusion="early",
    scaling={
        "galex": LinearScale(scale=0.05, lo=0.0, hi=1.0),
        "ps1": AsinhScale(alpha=0.01, q=8.0, floor=0.0),
        "unwise": AsinhScale(alpha=0.1, q=6.0, floor=0.0),
    },
    crop={"galex": 22, "ps1": 120, "unwise": 22},
    resize=None,
    channels=("NUV", "FUV", "g", "r", "i", "z", "y", "W1", "W2"),
    rotate=True,
    hflip_p=0.5,
    vflip_p=0.5,
    augment_per="batch",
    antialias=True,
)
"""Early fusion as released: 120 x 120 PS1 crop (30 arcsec), 22 x 22 GALEX and unWISE crops resized to
120 x 120, channels NUV FUV g r i z y W1 W2."""

PAPER_LATE = replace(PAPER_EARLY, fusion="late", crop={**PAPER_EARLY.crop, "galex": None, "unwise": None})
"""Late fusion as released: PS1 cropped as in early fusion, GALEX and unWISE at their native 32 x 32."""


def preset_for(data_config: Mapping) -> TransformConfig:
    """The paper's preset for a checkpoint's input settings: ``fusion`` ("early"/"late"), ``bands`` (a name
    in ``ABLATIONS``), optional ``ps1_crop`` (PS1 pixels kept) and ``resize`` (early fusion's grid, pixels)."""
    fusion = data_config.get("fusion", "early")
    cfg = (PAPER_EARLY if fusion == "early" else PAPER_LATE).with_bands(data_config.get("bands", "all"))
    if data_config.get("ps1_crop") is not None:
        cfg = replace(cfg, crop={**cfg.crop, "ps1": int(data_config["ps1_crop"])})
    if data_config.get("resize") is not None:
        if fusion != "early":
            raise MantisDataError("resize applies to early fusion only (late fusion keeps each survey's pixels)")
        cfg = replace(cfg, resize=int(data_config["resize"]))
    return cfg


# --------------------------------------------------------------------------------------------------
# Augmentation parameters
# --------------------------------------------------------------------------------------------------


@dataclass
class AugmentParams:
    """Per-sample augmentation: rotation angle (degrees, float64), horizontal and vertical flips (bool)."""

    angle_deg: torch.Tensor
    hflip: torch.Tensor
    vflip: torch.Tensor

    def to(self, device: torch.device | str) -> AugmentParams:
        """The same parameters on ``device``."""
        return AugmentParams(self.angle_deg.to(device), self.hflip.to(device), self.vflip.to(device))

    @classmethod
    def identity(cls, n: int) -> AugmentParams:
        """No rotation and no flips for ``n`` samples."""
        return cls(torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool))
