"""Batched torch transforms: flux scaling, rotations and flips, crops, early-fusion resampling, band ablation.

Everything works on a batch (a dict of tensors as the loaders yield it: ``galex`` (B,2,32,32),
``ps1`` (B,5,170,170), ``unwise`` (B,2,32,32) float32 linear flux, in the stored band order of
``bands.py``) and runs unchanged on the CPU (in loader workers) or on a GPU after the batch is moved
there. One ``TransformConfig`` holds every parameter; ``PAPER_EARLY`` and ``PAPER_LATE`` are the
released model's (Engel et al.; github.com/pnnl/MantisShrimp ``augmentation.py`` and ``utils.py``),
so its published weights can be used on these loaders as they are. Those two presets are the only
place the preset's numbers are written.

Order of operations (the released model's):

1. flux scaling per survey: Pan-STARRS and unWISE ``asinh(alpha * Q * flux) / Q`` (Lupton's
   quasi-logarithmic scale) with values below zero set to zero; GALEX ``flux / 0.05`` clipped to [0, 1];
2. augmentation (``train=True``): one angle drawn uniformly in [0, 360) degrees, applied to all three
   surveys: nearest-neighbour rotation about the image centre (pixel (N-1)/2, (N-1)/2),
   counter-clockwise as displayed with row 0 at the top (torchvision's convention), pixels with no
   source set to 0; then a horizontal flip (columns reversed) and a vertical flip (rows reversed), each
   with probability 0.5. The presets draw one angle and one flip pair per batch, applied to every
   galaxy of the batch, as the released ``augment_fn`` does; ``augment_per="galaxy"`` draws them for
   each galaxy instead;
3. centre crops (torchvision's ``CenterCrop`` offsets: ``round((N - K) / 2)``);
4. early fusion: GALEX and unWISE crops resized to the PS1 crop's grid (bilinear, antialiased,
   half-pixel centres: ``torch.nn.functional.interpolate(..., align_corners=False, antialias=True)``)
   and all bands stacked in the output channel order into ``image`` (B, 9, 120, 120) for the preset.
   Late fusion keeps the three survey tensors (``ps1`` cropped, GALEX and unWISE at 32 x 32).

Non-finite input pixels (NaN, +-inf) are set to 0 before scaling, whatever the builder did: arrays
from users and from forced photo-z come straight in.

Scaling is pointwise and the rotation and crops only move pixels, so steps 1-3 are computed as one
gather per survey (only the output pixels are read, then scaled); the result equals doing them in the
order above. Nearest-neighbour source pixels are found in float64 with ties rounded up
(``floor(x + 0.5)``); torchvision rounds in float32, half to even, which can pick the other neighbour
for a pixel lying within ~1e-5 px of a half-pixel boundary, and nothing else differs.

Evaluation (``train=False``) skips step 2. (The released inference script applied the random training
augmentation at inference too; use ``train=True`` with a seed to reproduce that.)

Random parameters are drawn on the CPU from a generator seeded by the batch's ``aug_seed`` (the loaders
put one in every batch, a function of seed, epoch, rank and batch number) so the same batch gets the
same augmentation on CPU or GPU, with any number of workers, and after a resume.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

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
    "Transform",
    "TransformConfig",
    "crop_pixels",
    "paper_transform",
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


# --------------------------------------------------------------------------------------------------
# The transform
# --------------------------------------------------------------------------------------------------

Alloc = Callable[[str, tuple[int, ...], torch.dtype, torch.device], torch.Tensor]
"""Allocator of output tensors: (output name, shape, dtype, device) -> uninitialised tensor."""


def _default_alloc(name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device=device)


@dataclass
class Transform:
    """The batched transform of ``config``; ``train=True`` adds the random rotation and flips.

    An instance keeps work buffers between calls: use one instance per thread (loader workers each get
    their own copy).
    """

    config: TransformConfig = PAPER_EARLY
    train: bool = True
    _index_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_index_cache"] = {}  # work buffers stay in their process
        return state

    @property
    def surveys(self) -> tuple[str, ...]:
        """Image fields (surveys) the transform reads from a batch."""
        return self.config.surveys

    @property
    def augmenting(self) -> bool:
        """Whether this transform draws random parameters."""
        c = self.config
        return self.train and (c.rotate or c.hflip_p > 0 or c.vflip_p > 0)

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of each image the transform outputs (without the batch dimension)."""
        c = self.config
        chans = c.kept_channels
        if c.fusion == "early":
            return {"image": (len(chans), c.grid, c.grid)}
        out = {}
        for s in self.surveys:
            n = sum(1 for b in chans if _BAND_SURVEY[b] == s)
            out[s] = (n, c.out_size(s), c.out_size(s))
        return out

    def sample_params(self, n: int, generator: torch.Generator | None = None) -> AugmentParams:
        """Draw rotation angles (uniform in [0, 360) degrees) and flips for ``n`` samples, on the CPU.

        With ``augment_per="batch"`` one angle and one flip pair are drawn and given to all ``n`` samples.
        """
        c = self.config
        if not self.augmenting:
            return AugmentParams.identity(n)
        if c.augment_per == "batch":
            u = torch.rand((3, 1), generator=generator, dtype=torch.float64).expand(3, n).contiguous()
        else:
            u = torch.rand((3, n), generator=generator, dtype=torch.float64)
        angle = u[0] * 360.0 if c.rotate else torch.zeros(n, dtype=torch.float64)
        return AugmentParams(angle, u[1] < c.hflip_p, u[2] < c.vflip_p)

    def params_for(self, batch: Mapping, n: int) -> AugmentParams:
        """The augmentation of a batch: drawn from its ``aug_seed`` when it has one, else from torch's RNG."""
        if not self.augmenting:
            return AugmentParams.identity(n)
        seed = batch.get("aug_seed") if isinstance(batch, Mapping) else None
        gen = None
        if seed is not None:
            gen = torch.Generator().manual_seed(int(seed))
        return self.sample_params(n, gen)

    def __call__(self, batch: Mapping, params: AugmentParams | None = None, alloc: Alloc | None = None) -> dict:
        """Transform a batch dict (images (B, C, N, N) linear flux); return a new dict with the network inputs.

        ``params`` fixes the augmentation (default: drawn from the batch's ``aug_seed``); ``alloc`` allocates
        the output images (the loaders pass one that writes straight into shared memory).
        """
        c = self.config
        surveys = self.surveys
        missing = [s for s in surveys if s not in batch]
        if missing:
            raise MantisDataError(f"the batch has no {missing} images (has {sorted(batch)}); load them or drop those bands")
        first = batch[surveys[0]]
        n, device = first.shape[0], first.device
        if params is None:
            params = self.params_for(batch, n)
        params = params.to(device)
        alloc = alloc or _default_alloc
        out = {k: v for k, v in batch.items() if k not in SURVEY_ORDER}
        chans = c.kept_channels
        zeroed = set() if c.bands is None or c.ablate == "drop" else {b for b in c.channels if b not in c.bands}
        if c.fusion == "early":
            g = c.grid
            image = alloc("image", (n, len(chans), g, g), torch.float32, device)
            for s in surveys:
                stored = SURVEYS[s].bands
                want = [(pos, b) for pos, b in enumerate(chans) if _BAND_SURVEY[b] == s]
                src = [stored.index(b) for _, b in want]
                pos = [p for p, _ in want]
                contiguous = pos == list(range(pos[0], pos[0] + len(pos)))
                k = self._crop_size(batch[s], s)
                if k == g and contiguous:
                    self._crop(batch[s], s, src, params, image[:, pos[0] : pos[0] + len(pos)])
                else:
                    x = self._crop(batch[s], s, src, params, self._scratch(f"crop-{s}", (n, len(src), k, k), image))
                    if k != g and contiguous:
                        self._resize(x, image[:, pos[0] : pos[0] + len(pos)])
                    else:
                        if k != g:
                            y = self._scratch(f"grid-{s}", (n, len(src), g, g), image)
                            self._resize(x, y)
                            x = y
                        image[:, pos] = x
                for p, b in want:
                    if b in zeroed:
                        image[:, p].zero_()
            out["image"] = image
        else:
            for s in surveys:
                stored = SURVEYS[s].bands
                want = [b for b in chans if _BAND_SURVEY[b] == s]
                k = self._crop_size(batch[s], s)
                y = alloc(s, (n, len(want), k, k), torch.float32, device)
                self._crop(batch[s], s, [stored.index(b) for b in want], params, y)
                for i, b in enumerate(want):
                    if b in zeroed:
                        y[:, i].zero_()
                out[s] = y
        return out

    # ---------------------------------------------------------------------------------------------

    def _resize(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """Bilinear resize of ``x`` (B, C, k, k) into ``out`` (B, C, g, g), half-pixel centres, antialiased if set.

        Enlarging, antialiasing changes nothing and bilinear interpolation is two small matrix products
        (rows, then columns) with the 2-tap weights: half the time of the interpolation kernel, the same
        values to float32 rounding. Shrinking with antialiasing uses torch's antialiased kernel.
        """
        b, c, k, _ = x.shape
        g = out.shape[-1]
        if g >= k:
            w = self._weights(k, g, x.device)  # (g, k)
            rows = self._scratch(f"resize-rows-{k}-{g}", (b, c, g, k), out)
            torch.matmul(w, x, out=rows)
            res = self._scratch(f"resize-{k}-{g}", (b, c, g, g), out)
            torch.matmul(rows, w.t(), out=res)
            out.copy_(res)
            return
        if self.config.antialias:
            try:  # the out= form of F.interpolate's antialiased kernel: no fresh output memory per batch
                torch.ops.aten._upsample_bilinear2d_aa.out(x, [g, g], False, None, None, out=out)
                return
            except (AttributeError, RuntimeError):
                pass
        out.copy_(F.interpolate(x, size=(g, g), mode="bilinear", align_corners=False, antialias=self.config.antialias))

    def _weights(self, k: int, g: int, device: torch.device) -> torch.Tensor:
        """(g, k) float32 bilinear weights from k to g >= k pixels (half-pixel centres, edges clamped)."""
        key = ("weights", k, g, device)
        w = self._index_cache.get(key)
        if w is None:
            src = np.clip((np.arange(g) + 0.5) * (k / g) - 0.5, 0, k - 1)
            i0 = np.floor(src).astype(np.int64)
            i1 = np.minimum(i0 + 1, k - 1)
            frac = src - i0
            m = np.zeros((g, k))
            np.add.at(m, (np.arange(g), i0), 1 - frac)
            np.add.at(m, (np.arange(g), i1), frac)
            w = torch.from_numpy(m).to(device=device, dtype=torch.float32)
            self._index_cache[key] = w
        return w

    def _crop_size(self, x: torch.Tensor, survey: str) -> int:
        """Side of ``survey``'s crop for images ``x``; checks their shape."""
        if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
            raise MantisDataError(f"{survey} images must be (batch, bands, N, N); got {tuple(x.shape)}")
        size = x.shape[-1]
        k = size if self.config.crop[survey] is None else int(self.config.crop[survey])
        if k > size:
            raise MantisDataError(f"{survey}: crop {k} px is larger than the image ({size} px)")
        return k

    def _scratch(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A reusable work tensor (kept between calls, so large temporaries are not reallocated per batch)."""
        key = (name, like.device, like.dtype)
        buf = self._index_cache.get(key)
        numel = math.prod(shape)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=like.dtype, device=like.device)
            self._index_cache[key] = buf
        return buf[:numel].view(shape)

    def _scale_(self, y: torch.Tensor, survey: str) -> None:
        """Set non-finite pixels of ``y`` to 0, then apply ``survey``'s flux scaling, in place."""
        torch.nan_to_num_(y, nan=0.0, posinf=0.0, neginf=0.0)
        scale = self.config.scaling[survey]
        if isinstance(scale, AsinhScale):
            scale.apply_(y, work=self._scratch("asinh", tuple(y.shape), y))
        else:
            scale.apply_(y)

    def _crop(
        self, x: torch.Tensor, survey: str, chans: list[int], params: AugmentParams, out: torch.Tensor | None
    ) -> torch.Tensor:
        """Scaled, rotated, flipped and centre-cropped channels ``chans`` of one survey, (B, len(chans), K, K),
        written into ``out`` when given (any strided view whose last two dims are contiguous)."""
        b, nc, size, _ = x.shape
        k = self._crop_size(x, survey)
        top = int(round((size - k) / 2.0))
        all_chans = chans == list(range(nc))
        if out is None:
            out = torch.empty((b, len(chans), k, k), dtype=torch.float32, device=x.device)
        per_sample = x.device.type == "cpu" and len(chans) * size * size * 4 > _CACHE_FRIENDLY_BYTES
        if not self.augmenting:
            y = x[..., top : top + k, top : top + k]
            y = y if all_chans else y[:, chans]
            if per_sample:  # copy and scale one sample at a time, while it is in the CPU cache
                for i in range(b):
                    out[i].copy_(y[i])
                    self._scale_(out[i], survey)
            else:
                out.copy_(y)
                self._scale_(out, survey)
            return out
        plan = _IndexPlan(size, k, top, params, x.device)
        flat = x.reshape(b, nc, size * size)
        dst = out.view(b, len(chans), k * k)
        if per_sample:
            # one sample at a time, so that its planes, indices and output stay in the CPU cache: the
            # rotated reads miss the cache badly when the source comes from memory (~4x slower)
            cidx = torch.tensor(chans, dtype=torch.int64)
            src = self._scratch("src", (len(chans), size * size), out)
            for i in range(b):
                torch.index_select(flat[i], 0, cidx, out=src)  # sequential copy: pulls the planes into cache
                idx, valid = plan.index(i)
                torch.index_select(src, 1, idx, out=dst[i])
                self._scale_(out[i], survey)
                if valid is not None:
                    dst[i].masked_fill_(~valid, 0.0)
            return out
        sel = flat if all_chans else flat[:, chans]
        idx, valid = plan.index(None)
        index = idx.to(torch.int64).view(b, 1, k * k).expand(b, len(chans), k * k)
        if sel.dtype == torch.float32:
            torch.gather(sel, 2, index, out=dst)
        else:
            dst.copy_(torch.gather(sel, 2, index))
        self._scale_(out, survey)
        if valid is not None:
            dst.masked_fill_(~valid.view(b, 1, k * k), 0.0)
        return out


_CACHE_FRIENDLY_BYTES = 64 * 1024
"""Per-sample source size above which the CPU path transforms one sample at a time."""


class _IndexPlan:
    """Nearest-neighbour source pixel of every output pixel under rotate -> flip -> centre crop.

    The source column of output pixel (i, j) is floor(a_j - b_i) and its row floor(c_j + d_i), with
    float64 vectors a = cos x_j + centre + 1/2, b = sin y_i, c = sin x_j + centre + 1/2, d = cos y_i
    (x, y: output pixel position from the image centre, after undoing the flips; counter-clockwise as
    displayed, y down; nearest = floor(v + 1/2)). Writing each vector as integer part + fraction,
    floor(a_j - b_i) = [a_j] - [b_i] - 1 + (frac a_j >= frac b_i) and floor(c_j + d_i) = [c_j] + [d_i] +
    (frac c_j >= 1 - frac d_i): the per-pixel work is two comparisons and integer adds.
    """

    def __init__(self, size: int, k: int, top: int, params: AugmentParams, device: torch.device):
        f64 = torch.float64
        self.size, self.k = size, k
        grid = torch.arange(top, top + k, dtype=f64, device=device)
        last = float(size - 1)
        cen = last / 2.0
        # output = flip(rotate(x)): undo the flips first (in full-image coordinates), then the rotation
        rows = torch.where(params.vflip[:, None], last - grid[None, :], grid[None, :]) - cen  # (B, K), down
        cols = torch.where(params.hflip[:, None], last - grid[None, :], grid[None, :]) - cen  # (B, K), right
        theta = torch.deg2rad(params.angle_deg.to(f64))[:, None]
        cos, sin = torch.cos(theta), torch.sin(theta)
        a = cos * cols + (cen + 0.5)  # over output columns j
        b = sin * rows  # over output rows i
        c = sin * cols + (cen + 0.5)
        d = cos * rows
        fa, fb, fc, fd = torch.floor(a), torch.floor(b), torch.floor(c), torch.floor(d)
        self.ra, self.rb, self.rc, self.rd1 = a - fa, b - fb, c - fc, 1.0 - (d - fd)
        # the source column and row are monotone in i and j: their extremes are at the crop's corners
        ends = [0, k - 1]
        xs_c = torch.stack([fa[:, j] - fb[:, i] - 1 + (self.ra[:, j] >= self.rb[:, i]).to(f64) for i in ends for j in ends])
        ys_c = torch.stack([fc[:, j] + fd[:, i] + (self.rc[:, j] >= self.rd1[:, i]).to(f64) for i in ends for j in ends])
        lo = float(torch.minimum(xs_c.min(), ys_c.min()))
        hi = float(torch.maximum(xs_c.max(), ys_c.max()))
        self.all_valid = lo >= 0 and hi <= last
        # int32 on the CPU (index_select takes it, half the memory traffic), int64 for gather elsewhere
        itype = torch.int32 if torch.device(device).type == "cpu" else torch.int64
        if self.all_valid:
            self.p = (fc * size + fa - 1).to(itype)  # (B, K) over j
            self.q = (fd * size - fb).to(itype)  # (B, K) over i
        else:
            self.fa1, self.fb, self.fc, self.fd = ((fa - 1).to(itype), fb.to(itype), fc.to(itype), fd.to(itype))

    def index(self, i: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(flat source index, validity or None) of sample ``i``: (K*K,), or of all samples: (B, K*K)."""
        sl = slice(None) if i is None else slice(i, i + 1)
        ra, rb, rc, rd1 = self.ra[sl], self.rb[sl], self.rc[sl], self.rd1[sl]
        ge_x = ra[:, None, :] >= rb[:, :, None]  # (n, K, K) bool
        ge_y = rc[:, None, :] >= rd1[:, :, None]
        kk = self.k * self.k
        if self.all_valid:
            idx = self.p[sl][:, None, :] + self.q[sl][:, :, None]
            idx.add_(ge_x).add_(ge_y, alpha=self.size)
            valid = None
        else:
            xs = (self.fa1[sl][:, None, :] - self.fb[sl][:, :, None]).add_(ge_x)
            ys = (self.fc[sl][:, None, :] + self.fd[sl][:, :, None]).add_(ge_y)
            last = self.size - 1
            valid = ((xs >= 0) & (xs <= last) & (ys >= 0) & (ys <= last)).view(-1, kk)
            idx = ys.clamp_(0, last).mul_(self.size).add_(xs.clamp_(0, last))
        idx = idx.view(-1, kk)
        if i is not None:
            return idx[0], (None if valid is None else valid[0])
        return idx, valid


def paper_transform(fusion: str = "early", train: bool = True, **overrides) -> Transform:
    """The released model's transform (``PAPER_EARLY`` or ``PAPER_LATE``), with any field of the config overridden."""
    if fusion not in ("early", "late"):
        raise MantisDataError(f"fusion must be 'early' or 'late', not {fusion!r}")
    base = PAPER_EARLY if fusion == "early" else PAPER_LATE
    return Transform(replace(base, **overrides) if overrides else base, train=train)
