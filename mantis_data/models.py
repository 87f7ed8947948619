"""The paper's early- and late-fusion ConvNeXt models (Engel et al., Sec. 4), built from timm.

Early fusion: one ConvNeXt (paper: ConvNeXt-Large) on the stacked bands (``image``, B x C x 120 x 120 from
``paper_transform("early")``; C = 9 with all bands). Late fusion: one ConvNeXt per survey, each on that
survey's own pixels (paper: ConvNeXt-Large for Pan-STARRS, ConvNeXt-Small for GALEX and for unWISE),
pooled features concatenated. The heads are the released model's (pnnl/MantisShrimp ``models.py``):

- early fusion: ``cat(features, E(B-V)) -> Linear(hidden 2048) -> GELU -> Linear(400)``;
- late fusion: ``ReLU(cat(ps1, unwise, galex features))``, then the E(B-V) appended (not rectified), then
  ``Linear(hidden 2048) -> ReLU -> Linear(400)``.

The two E(B-V) values are ``ebv_csfd``, ``ebv_planck``; the output is the logits of the 400 redshift
classes (softmax = the PMF over ``mantis_data.redshift.GRID``).

Band ablations (``bands``, the names of ``mantis_data.transforms.ABLATIONS``): early fusion gets fewer
input channels; late fusion has no encoder at all for an ablated survey (not one fed zeros).

Initialisation from a 3-channel checkpoint (ImageNet or Zoobot ConvNeXt weights in a local file; nothing
is downloaded): every backbone weight is copied, except the stem convolution, whose weight becomes the
mean over the checkpoint's input channels divided by the model's channel count, copied to every channel
(the paper's rule: mean / 9 for the 9-band early-fusion stem; mean / 5 and mean / 2 for the late-fusion
encoders, so that the sum over channels, hence the first activations, keep their scale). Without a
checkpoint the weights are timm's random initialisation.

The early-fusion model's parameter names match the released model's (``Base.*``, ``fc0``, ``fc1``), so
its published weights load with ``load_released_early``.

Moved out, still importable from here: checkpoint reading and the stem rule (``CheckpointError``,
``read_state_dict``, ``inflate_stem``, ``stem_key``, ``load_backbone_checkpoint``) live in
``mantis_data.checkpoints``; the published weights' loading (``load_released``, ``load_released_early``,
``released_config``, ``file_sha256``, ``RELEASED_SHA256``, ...) in ``mantis_data.released_model``, which
imports this module, so those names are resolved on first use (``__getattr__`` below).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mantis_data.bands import SURVEY_ORDER
from mantis_data.checkpoints import (  # noqa: F401  (moved to checkpoints.py; kept importable from here)
    _PREFIXES,
    _WRAPPER_KEYS,
    CheckpointError,
    _to_timm_names,
    _torchvision_to_timm_convnext,
    inflate_stem,
    load_backbone_checkpoint,
    read_state_dict,
    stem_key,
)
from mantis_data.errors import MantisDataError
from mantis_data.redshift import N_BINS
from mantis_data.transforms import ABLATIONS, PAPER_EARLY

if TYPE_CHECKING:  # moved to released_model.py (which imports this module): resolved by __getattr__ below
    from mantis_data.released_model import (  # noqa: F401
        _CONVNEXT_LARGE,
        RELEASED_BYTES,
        RELEASED_DATA_CONFIG,
        RELEASED_SHA256,
        _fit_report,
        _strip_module,
        file_sha256,
        load_released,
        load_released_early,
        released_config,
    )

__all__ = [
    "BAND_CHOICES",
    "CheckpointError",
    "EarlyFusion",
    "LATE_FEATURE_ORDER",
    "LateFusion",
    "ModelConfig",
    "build_model",
    "create_backbone",
    "inflate_stem",
    "load_backbone_checkpoint",
    "load_released",
    "load_released_early",
    "model_inputs",
    "parameter_count",
    "read_state_dict",
    "released_config",
    "stem_key",
]

BAND_CHOICES: tuple[str, ...] = tuple(ABLATIONS)
"""Band selections (ablations): "optical", "optical+uv", "optical+ir", "all"."""
N_EBV = 2
"""E(B-V) values appended to the image features: ebv_csfd, ebv_planck (mag)."""
HIDDEN_WIDTH = 2048
"""Hidden width of the head (Table 3's best for both fusions)."""


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model's architecture (stored in every training checkpoint).

    backbone: timm name of the early-fusion network, or of the Pan-STARRS encoder in late fusion.
    aux_backbone: timm name of the GALEX and unWISE encoders (late fusion only).
    backbone_kwargs, aux_backbone_kwargs: extra ``timm.create_model`` arguments (e.g. ``depths``, ``dims``
        for a tiny test network).
    """

    fusion: str = "early"
    bands: str = "all"
    backbone: str = "convnext_large"
    aux_backbone: str = "convnext_small"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    aux_backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    hidden_width: int = HIDDEN_WIDTH
    n_classes: int = N_BINS

    def __post_init__(self) -> None:
        if self.fusion not in ("early", "late"):
            raise MantisDataError(f"fusion must be 'early' or 'late', not {self.fusion!r}")
        if self.bands not in ABLATIONS:
            raise MantisDataError(f"unknown band selection {self.bands!r}; known: {', '.join(ABLATIONS)}")

    @property
    def channels(self) -> tuple[str, ...]:
        """Early fusion: the input channels (band names, in the transform's output order)."""
        return PAPER_EARLY.with_bands(self.bands).kept_channels

    @property
    def surveys(self) -> tuple[str, ...]:
        """Surveys with at least one kept band (late fusion: one encoder each)."""
        return PAPER_EARLY.with_bands(self.bands).surveys

    def survey_channels(self, survey: str) -> int:
        """Late fusion: number of input channels of ``survey``'s encoder."""
        from mantis_data.bands import SURVEYS

        return sum(1 for b in self.channels if b in SURVEYS[survey].bands)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict`` (unknown keys are an error)."""
        return cls(**dict(d))


# --------------------------------------------------------------------------------------------------
# Checkpoints of 3-channel backbones
# --------------------------------------------------------------------------------------------------

def create_backbone(
    name: str, in_chans: int, checkpoint: str | os.PathLike | None = None, **kwargs: Any
) -> nn.Module:
    """A timm backbone (no classifier: outputs pooled features) with ``in_chans`` inputs, random or from a checkpoint."""
    import timm

    try:
        model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)
    except RuntimeError as exc:  # timm: "Unknown model"
        raise MantisDataError(f"cannot create backbone {name!r}: {exc}") from exc
    if checkpoint is not None:
        load_backbone_checkpoint(model, checkpoint)
    return model


# --------------------------------------------------------------------------------------------------
# The models
# --------------------------------------------------------------------------------------------------


class EarlyFusion(nn.Module):
    """One backbone on the stacked bands; the released model's layout (``Base``, ``fc0``, ``fc1``)."""

    fusion = "early"

    def __init__(self, config: ModelConfig, checkpoint: str | os.PathLike | None = None):
        super().__init__()
        self.config = config
        self.Base = create_backbone(config.backbone, len(config.channels), checkpoint, **config.backbone_kwargs)
        self.fc0 = nn.Linear(self.Base.num_features + N_EBV, config.hidden_width)
        self.activation = nn.GELU()
        self.fc1 = nn.Linear(config.hidden_width, config.n_classes)

    def forward(self, image: torch.Tensor, ebv: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes) from ``image`` (B, C, H, W) and E(B-V) (B, 2): fc1(GELU(fc0([features, ebv])))."""
        x = self.Base(image)
        x = torch.cat([x, ebv.to(x.dtype)], dim=1)
        return self.fc1(self.activation(self.fc0(x)))


LATE_FEATURE_ORDER: tuple[str, ...] = ("ps1", "unwise", "galex")
"""Late fusion: order in which the encoders' pooled features are concatenated (the released model's)."""


class LateFusion(nn.Module):
    """One backbone per kept survey (``encoders[survey]``), pooled features concatenated, then the head.

    Head (the released ``LateFusionModel``): ReLU on the concatenated features (Pan-STARRS, unWISE, GALEX
    order), E(B-V) appended after it, then ``fc0 -> ReLU -> fc1``.
    """

    fusion = "late"

    def __init__(
        self,
        config: ModelConfig,
        checkpoint: str | os.PathLike | None = None,
        aux_checkpoint: str | os.PathLike | None = None,
    ):
        super().__init__()
        self.config = config
        self.surveys = config.surveys
        enc = {}
        for s in self.surveys:
            main = s == "ps1"
            enc[s] = create_backbone(
                config.backbone if main else config.aux_backbone,
                config.survey_channels(s),
                checkpoint if main else aux_checkpoint,
                **(config.backbone_kwargs if main else config.aux_backbone_kwargs),
            )
        self.encoders = nn.ModuleDict(enc)
        self.feature_order = tuple(s for s in LATE_FEATURE_ORDER if s in self.surveys)
        n_features = sum(e.num_features for e in self.encoders.values())
        self.feature_activation = nn.ReLU()
        self.fc0 = nn.Linear(n_features + N_EBV, config.hidden_width)
        self.activation = nn.ReLU()
        self.fc1 = nn.Linear(config.hidden_width, config.n_classes)

    def forward(self, images: Mapping[str, torch.Tensor], ebv: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes) from each kept survey's images (B, C_s, N_s, N_s) and E(B-V) (B, 2).

        fc1(ReLU(fc0([ReLU([ps1, unwise, galex features]), ebv]))), as the released late-fusion model.
        """
        feats = self.feature_activation(torch.cat([self.encoders[s](images[s]) for s in self.feature_order], dim=1))
        x = torch.cat([feats, ebv.to(feats.dtype)], dim=1)
        return self.fc1(self.activation(self.fc0(x)))


def build_model(
    config: ModelConfig,
    checkpoint: str | os.PathLike | None = None,
    aux_checkpoint: str | os.PathLike | None = None,
) -> EarlyFusion | LateFusion:
    """The model of ``config``; backbones initialised from local 3-channel checkpoints when given."""
    if config.fusion == "early":
        if aux_checkpoint is not None:
            raise MantisDataError("an auxiliary checkpoint is for the late-fusion GALEX/unWISE encoders only")
        return EarlyFusion(config, checkpoint)
    return LateFusion(config, checkpoint, aux_checkpoint)


def model_inputs(batch: Mapping[str, Any], config: ModelConfig) -> tuple[Any, torch.Tensor]:
    """The positional arguments of the model's forward from a transformed batch: (image or images, ebv)."""
    if config.fusion == "early":
        return batch["image"], batch["ebv"]
    return {s: batch[s] for s in config.surveys if s in SURVEY_ORDER}, batch["ebv"]


def parameter_count(model: nn.Module) -> dict[str, int]:
    """Parameters per top-level part and in total ({"Base": n, "head": n, "total": n} or per encoder)."""
    out: dict[str, int] = {}
    if isinstance(model, LateFusion):
        for s, e in model.encoders.items():
            out[f"encoder[{s}]"] = sum(p.numel() for p in e.parameters())
    elif isinstance(model, EarlyFusion):
        out["backbone"] = sum(p.numel() for p in model.Base.parameters())
    out["head"] = sum(p.numel() for m in (model.fc0, model.fc1) for p in m.parameters())
    out["total"] = sum(p.numel() for p in model.parameters())
    return out


_MOVED_TO_RELEASED_MODEL = (
    "RELEASED_BYTES",
    "RELEASED_DATA_CONFIG",
    "RELEASED_SHA256",
    "_CONVNEXT_LARGE",
    "_fit_report",
    "_strip_module",
    "file_sha256",
    "load_released",
    "load_released_early",
    "released_config",
)
"""Names moved to ``mantis_data.released_model`` (which imports this module), still importable from here."""


def __getattr__(name: str) -> Any:
    """A name moved to ``mantis_data.released_model``, imported on first use (no import cycle at load time)."""
    if name not in _MOVED_TO_RELEASED_MODEL:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from mantis_data import released_model

    value = getattr(released_model, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the moved ones included."""
    return sorted({*globals(), *_MOVED_TO_RELEASED_MODEL})
