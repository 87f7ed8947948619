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
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mantis_data.bands import SURVEY_ORDER
from mantis_data.errors import MantisDataError
from mantis_data.redshift import N_BINS
from mantis_data.transforms import ABLATIONS, PAPER_EARLY

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


class CheckpointError(MantisDataError):
    """A backbone checkpoint file is missing, unreadable or does not fit the backbone."""


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

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "network", "net")
_PREFIXES = ("module.", "_orig_mod.", "model.", "encoder.", "backbone.")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (.pth/.pt/.bin via torch.load, .safetensors), unwrapped and unprefixed.

    Unwraps {"state_dict": ...} / {"model": ...} containers and strips "module." (DDP) and "_orig_mod."
    (torch.compile) style prefixes shared by every key.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give a local .pth/.pt/.safetensors file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise CheckpointError(f"{path}: reading .safetensors needs the safetensors package") from exc
        try:
            sd: Any = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from exc
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(
                f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {exc}); "
                "save a state dict with torch.save(model.state_dict(), path)"
            ) from exc
    for _ in range(3):  # nested containers, e.g. {"model": {"state_dict": ...}}
        if isinstance(sd, Mapping) and not any(isinstance(v, torch.Tensor) for v in sd.values()):
            inner = next((sd[k] for k in _WRAPPER_KEYS if isinstance(sd.get(k), Mapping)), None)
            if inner is None:
                break
            sd = inner
    if not isinstance(sd, Mapping) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if sd and all(k.startswith(p) for k in sd):
                sd = {k[len(p) :]: v for k, v in sd.items()}
                changed = True
    return sd


def _torchvision_to_timm_convnext(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ConvNeXt state dict (``features.*``, ``classifier.*``) to timm's names."""
    import re

    out = {}
    for k, v in sd.items():
        m = re.match(r"features\.0\.([01])\.(.*)", k)
        if m:
            out[f"stem.{m[1]}.{m[2]}"] = v
            continue
        m = re.match(r"features\.(\d+)\.(\d+)\.(.*)", k)
        if m:
            f, i, rest = int(m[1]), int(m[2]), m[3]
            if f % 2 == 1:  # a stage's blocks
                stage = (f - 1) // 2
                sub = {"block.0": "conv_dw", "block.2": "norm", "block.3": "mlp.fc1", "block.5": "mlp.fc2"}
                if rest == "layer_scale":
                    out[f"stages.{stage}.blocks.{i}.gamma"] = v.reshape(-1)
                    continue
                for a, b in sub.items():
                    if rest.startswith(a + "."):
                        out[f"stages.{stage}.blocks.{i}.{b}{rest[len(a):]}"] = v
                        break
                else:
                    out[k] = v
            else:  # downsampling between stages: LayerNorm2d then conv
                out[f"stages.{f // 2}.downsample.{i}.{rest}"] = v
            continue
        m = re.match(r"classifier\.([02])\.(.*)", k)
        if m:
            out[("head.norm." if m[1] == "0" else "head.fc.") + m[2]] = v
            continue
        out[k] = v
    return out


def _to_timm_names(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map torchvision or original (Facebook) ConvNeXt names to timm's; timm state dicts pass unchanged."""
    if any(k.startswith("features.0.0.") for k in sd):
        return _torchvision_to_timm_convnext(sd)
    if any(k.startswith("downsample_layers.") for k in sd):
        from timm.models.convnext import checkpoint_filter_fn

        return dict(checkpoint_filter_fn(sd, model))
    return sd


def inflate_stem(weight: torch.Tensor, in_chans: int, divisor: float | None = None) -> torch.Tensor:
    """Stem weight (out, c, k, k) -> (out, in_chans, k, k): mean over the c channels / divisor, in every channel.

    ``divisor`` defaults to ``in_chans`` (the paper: mean / 9 for its 9-band stem).
    """
    if weight.dim() != 4:
        raise ValueError(f"a stem convolution weight has 4 dimensions; got shape {tuple(weight.shape)}")
    d = float(in_chans if divisor is None else divisor)
    mean = weight.float().mean(dim=1, keepdim=True) / d
    return mean.expand(-1, in_chans, -1, -1).contiguous().to(weight.dtype)


def stem_key(model: nn.Module) -> str:
    """State-dict key of a timm model's first convolution weight (``stem.0.weight`` for ConvNeXt)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return f"{cfg.get('first_conv', 'stem.0')}.weight"


def load_backbone_checkpoint(model: nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Load a (3-channel) checkpoint file into a timm backbone with the stem rule; return the skipped keys.

    The stem weight is inflated with ``inflate_stem`` when the checkpoint's channel count differs from the
    model's; the stem bias and all other backbone weights are copied. Classifier weights (``head.fc``) are
    ignored (backbones have no classifier). Any other missing or mismatched key is an error.
    """
    sd = _to_timm_names(read_state_dict(path), model)
    own = model.state_dict()
    key = stem_key(model)
    if key not in sd:  # an encoder inside a larger model (e.g. a Lightning "encoder." + "head." checkpoint)
        outer = [k for k in sd if k.endswith("." + key)]
        if len(outer) == 1:
            prefix = outer[0][: -len(key)]
            sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if key not in sd:
        raise CheckpointError(
            f"checkpoint {path} has no stem weight {key!r} (keys start {sorted(sd)[:4]}...); "
            "expected a timm or torchvision ConvNeXt state dict"
        )
    in_chans = own[key].shape[1]
    if sd[key].shape[1] != in_chans:
        sd[key] = inflate_stem(sd[key], in_chans)
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier", "head.fc")
    skipped = sorted(k for k in sd if k.startswith(classifier + ".") and k not in own)
    sd = {k: v for k, v in sd.items() if k not in skipped}
    bad_shape = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items() if k in own and v.shape != own[k].shape]
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if bad_shape or missing or unexpected:
        arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture", type(model).__name__)
        raise CheckpointError(
            f"checkpoint {path} does not fit backbone {arch}: "
            + "; ".join(
                part
                for part in (
                    f"shape mismatch {bad_shape[:3]}" if bad_shape else "",
                    f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}" if missing else "",
                    f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}" if unexpected else "",
                )
                if part
            )
            + " (is it the same architecture and size?)"
        )
    model.load_state_dict(sd, strict=True)
    return {"skipped": skipped}


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


def load_released_early(model: EarlyFusion, path: str | os.PathLike) -> None:
    """Load the published early-fusion weights (``best_early.pt``: ``Base.*``, ``fc0``, ``fc1``) into ``model``."""
    sd = read_state_dict(path)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path} does not fit this early-fusion model ({exc}); the released model is "
            "ModelConfig(fusion='early', bands='all', backbone='convnext_large')"
        ) from exc


# --------------------------------------------------------------------------------------------------
# The published weights, and our own training checkpoints, as ready-to-run models
# --------------------------------------------------------------------------------------------------

RELEASED_SHA256 = "411536eba11a6733e5632c6a7c7cf9e07c000d68ff929965a9268c56b1c7428e"
"""sha256 of the published early-fusion weights (``best_early.pt`` of github.com/pnnl/MantisShrimp)."""
RELEASED_BYTES = 801_048_832
"""Size in bytes of the published ``best_early.pt``."""
RELEASED_DATA_CONFIG: dict[str, Any] = {"fusion": "early", "bands": "all", "ps1_crop": None, "resize": None}
"""The input settings of the published model: the paper's early-fusion preset, unchanged."""
_CONVNEXT_LARGE = {"depths": [3, 3, 27, 3], "dims": [192, 384, 768, 1536]}


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 8 * 2**20) -> str:
    """Hex sha256 of a file, read in chunks (the published checkpoint is ~800 MB)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def _strip_module(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys with any ``module.`` (DDP) or ``_orig_mod.`` (torch.compile) part removed, per key."""
    out = {}
    for k, v in sd.items():
        for part in ("module.", "_orig_mod."):
            if part in k:
                k = k.replace(part, "")
        out[k] = v
    return out


def released_config(sd: Mapping[str, torch.Tensor]) -> ModelConfig:
    """The early-fusion ModelConfig of a state dict in the released layout (``Base.*`` ConvNeXt, ``fc0``, ``fc1``).

    Depths and widths are read from the ``Base.stages.<i>`` keys (convnext_large's give the plain
    ``convnext_large``), the head's width and class count from ``fc0``/``fc1``, the band selection from
    the stem's input channels (9: all bands, 5: optical).
    """
    import re

    depths: dict[int, int] = {}
    dims: dict[int, int] = {}
    for k, v in sd.items():
        m = re.match(r"Base\.stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.weight$", k)
        if m:
            i, j = int(m[1]), int(m[2])
            depths[i] = max(depths.get(i, 0), j + 1)
            dims[i] = int(v.shape[0])
    need = ("Base.stem.0.weight", "fc0.weight", "fc1.weight")
    absent = [k for k in need if k not in sd]
    if absent or not depths or sorted(depths) != list(range(len(depths))):
        raise CheckpointError(
            f"not the released early-fusion layout: missing {absent or ['Base.stages.<i>.blocks.<j>.conv_dw.weight']} "
            f"(keys start {sorted(sd)[:4]}...); expected a ConvModel state dict (Base.*, fc0, fc1)"
        )
    in_chans = int(sd["Base.stem.0.weight"].shape[1])
    bands = {9: "all", 5: "optical"}.get(in_chans)
    if bands is None:
        raise CheckpointError(f"released-layout stem has {in_chans} input channels; give config= for this model")
    arch = {"depths": [depths[i] for i in sorted(depths)], "dims": [dims[i] for i in sorted(dims)]}
    return ModelConfig(
        fusion="early",
        bands=bands,
        backbone="convnext_large",
        backbone_kwargs={} if arch == _CONVNEXT_LARGE else arch,
        hidden_width=int(sd["fc0.weight"].shape[0]),
        n_classes=int(sd["fc1.weight"].shape[0]),
    )


def _fit_report(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> str:
    """'' when ``sd`` fits ``model`` exactly, else the missing, unexpected and mis-shaped keys named."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items() if k in own and v.shape != own[k].shape]

    def few(xs: list[str]) -> str:
        return ", ".join(xs[:6]) + (f" (+{len(xs) - 6} more)" if len(xs) > 6 else "")

    parts = [f"missing keys: {few(missing)}" if missing else "", f"unexpected keys: {few(unexpected)}" if unexpected else "",
             f"shape mismatch: {few(shapes)}" if shapes else ""]
    return "; ".join(p for p in parts if p)


def load_released(
    path: str | os.PathLike, check_hash: bool | str = False, config: ModelConfig | None = None
) -> EarlyFusion | LateFusion:
    """A ready model (eval mode, CPU) from the published ``best_early.pt`` or one of our training checkpoints.

    The published file is a plain state dict of the original ``ConvModel`` (keys ``Base.*``, ``fc0.*``,
    ``fc1.*``, possibly prefixed ``module.``); its architecture is read from the keys (``released_config``)
    unless ``config`` is given. A checkpoint written by ``training.train`` (``model``, ``model_config``,
    ``data_config``) is rebuilt from its own config. ``check_hash``: True compares the file's sha256 with
    the published ``RELEASED_SHA256``, a hex string with that digest. The model's ``data_config``
    attribute holds the input settings to preprocess with (the paper's preset for the published weights).
    Keys that do not fit raise CheckpointError naming the missing, unexpected and mis-shaped ones.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give the path of best_early.pt or a training checkpoint")
    if check_hash:
        want = RELEASED_SHA256 if check_hash is True else str(check_hash).lower()
        got = file_sha256(path)
        if got != want:
            size = path.stat().st_size
            raise CheckpointError(
                f"{path}: sha256 {got} is not the expected {want} ({size:,} bytes; the published file has "
                f"{RELEASED_BYTES:,}); download it again"
            )
    try:
        try:
            obj: Any = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not a zip-format file: mmap is unavailable
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {exc}); "
            "expected best_early.pt or a checkpoint written by training.train"
        ) from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping) and "model_config" in obj:
        try:
            cfg = config or ModelConfig.from_dict(obj["model_config"])
        except (TypeError, MantisDataError) as exc:
            raise CheckpointError(f"{path}: its model_config does not describe a model ({exc})") from exc
        sd = _strip_module(obj["model"])
        data_config = dict(obj.get("data_config") or {"fusion": cfg.fusion, "bands": cfg.bands})
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = _strip_module(obj)
        cfg = config or released_config(sd)
        data_config = {**RELEASED_DATA_CONFIG, "bands": cfg.bands}
    else:
        raise CheckpointError(f"{path} holds neither a state dict of tensors nor a training checkpoint")
    model = build_model(cfg)
    problem = _fit_report(model, sd)
    if problem:
        raise CheckpointError(f"{path} does not fit the model {cfg.backbone} ({cfg.fusion} fusion): {problem}")
    model.load_state_dict(sd, strict=True)
    model.eval()
    model.data_config = data_config
    return model
