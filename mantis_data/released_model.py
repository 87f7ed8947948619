"""The published early-fusion weights (``best_early.pt``) and our training checkpoints as ready-to-run models.

``load_released`` builds the model of a checkpoint (architecture read from the released layout's keys with
``released_config``, or a training checkpoint's own ``model_config``), checks its sha256 on request
(``file_sha256``, ``RELEASED_SHA256``) and loads the weights; ``load_released_early`` loads the published
weights into an early-fusion model built by the caller. Moved verbatim from ``mantis_data.models``, which
still re-exports every name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mantis_data.checkpoints import CheckpointError, read_state_dict
from mantis_data.errors import MantisDataError
from mantis_data.models import EarlyFusion, LateFusion, ModelConfig, build_model


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
