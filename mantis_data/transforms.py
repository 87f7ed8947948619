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

This module holds the ``Transform`` class and ``paper_transform``. The flux scalings, crops,
``TransformConfig``, the presets and ``AugmentParams`` live in ``transforms_config.py``, the resampling
index plan in ``transforms_resample.py``; every name of theirs is importable from here as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from .bands import SURVEY_ORDER, SURVEYS
from .errors import MantisDataError
from .transforms_config import (
    _BAND_SURVEY,
    ABLATIONS,
    AUGMENT_PER,
    PAPER_EARLY,
    PAPER_LATE,
    AsinhScale,
    AugmentParams,
    LinearScale,
    Scale,  # noqa: F401
    TransformConfig,
    crop_pixels,
    preset_for,
)
from .transforms_resample import _CACHE_FRIENDLY_BYTES, _IndexPlan

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
    "preset_for",
    "paper_transform",
]


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




def paper_transform(fusion: str = "early", train: bool = True, **overrides) -> Transform:
    """The released model's transform (``PAPER_EARLY`` or ``PAPER_LATE``), with any field of the config overridden."""
    if fusion not in ("early", "late"):
        raise MantisDataError(f"fusion must be 'early' or 'late', not {fusion!r}")
    base = PAPER_EARLY if fusion == "early" else PAPER_LATE
    return Transform(replace(base, **overrides) if overrides else base, train=train)
