"""Backbone checkpoint files: reading them and fitting 3-channel ConvNeXt weights to a timm backbone.

``read_state_dict`` reads a local .pth/.pt/.bin/.safetensors file (unwrapping ``{"state_dict": ...}``-style
containers and ``module.``-style prefixes); ``load_backbone_checkpoint`` maps torchvision or original
(Facebook) ConvNeXt names to timm's and loads the weights with the paper's stem rule (``inflate_stem``:
the stem weight's mean over its input channels, divided by the model's channel count, in every channel).
``CheckpointError`` is raised for a file that is missing, unreadable or does not fit. Moved verbatim from
``mantis_data.models``, which still re-exports every name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mantis_data.errors import MantisDataError


class CheckpointError(MantisDataError):
    """A backbone checkpoint file is missing, unreadable or does not fit the backbone."""


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
