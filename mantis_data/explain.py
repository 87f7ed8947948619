"""Which bands matter: exact Shapley values and MM-SHAP of a photo-z model over the nine bands and the three surveys.

For one galaxy (Engel et al., Sec. 2.3 and 5.1): every band gets a baseline image, the stored cutout with
the target galaxy replaced by background noise (``mantis_data.explain_baseline``); ``V(S)`` is the model's
point estimate (the PMF's expectation, redshift) when the bands outside ``S`` show their baselines; the
Shapley value of each band is exact, from all ``2**9 = 512`` coalitions, and MM-SHAP is
``|phi_j| / sum_k |phi_k|``. The three surveys as players take 8 more coalitions.

Speed: the paper's preprocessing (flux scaling, crops, resizing to the common grid) acts on each band
separately, so the original and the baseline are transformed once and the coalitions are composed from the
two transformed inputs, channel by channel; the 512 composed inputs go through the network in batches of
``batch_size``. (``tests/test_explain.py`` checks that this equals transforming each composed cutout.)

Per-galaxy API (for ``photoz`` and the web app)::

    model = load_model("best.pt")            # a training checkpoint, or the released best_early.pt
    result = explain_galaxy(model, ps1, galex, unwise, ebv)
    result["shapley"]                        # {band: phi}, redshift units; sum = v_all - v_none

Over a release split: ``explain_release`` / ``mantis-data explain`` (resumable, Parquet) and
``mantis_data.explain_report`` (per-redshift-bin averages with bootstrap intervals, figures).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bands import BANDS, SURVEY_ORDER, SURVEYS
from .errors import MantisDataError
from .explain_baseline import baseline_images
from .explain_shapley import coalition_matrix, coalition_values, mm_shap, shapley_from_values

__all__ = [
    "BAND_NAMES",
    "ExplainModel",
    "explain_galaxy",
    "galaxy_seed",
    "load_model",
    "wrap_model",
]

BAND_NAMES: tuple[str, ...] = tuple(b.name for b in BANDS)
"""The nine bands in wavelength order (the order of every per-band output here)."""


@dataclass
class ExplainModel:
    """A model with what it needs to turn stored cutouts into inputs: its config and evaluation transform."""

    model: Any  # torch.nn.Module (EarlyFusion or LateFusion)
    config: Any  # mantis_data.models.ModelConfig
    transform: Any  # mantis_data.transforms.Transform (train=False)

    @property
    def bands(self) -> tuple[str, ...]:
        """Bands the model sees, in ``BANDS`` order (the Shapley players)."""
        kept = set(self.transform.config.kept_channels)
        return tuple(b for b in BAND_NAMES if b in kept)

    @property
    def device(self):
        """Device of the model's parameters."""
        return next(self.model.parameters()).device


def wrap_model(model, transform=None) -> ExplainModel:
    """An ``ExplainModel`` of an ``EarlyFusion``/``LateFusion`` (default transform: the paper's preset for its config)."""
    from .transforms import PAPER_EARLY, PAPER_LATE, Transform

    config = getattr(model, "config", None)
    if config is None:
        raise MantisDataError("the model has no .config; build it with mantis_data.models.build_model")
    if transform is None:
        base = PAPER_EARLY if config.fusion == "early" else PAPER_LATE
        transform = Transform(base.with_bands(config.bands), train=False)
    model.eval()
    return ExplainModel(model, config, transform)


def load_model(path: str | Path, device: str = "cpu") -> ExplainModel:
    """Load a training checkpoint (``training.train``'s ``best.pt``/``last.pt``) or the released ``best_early.pt``."""
    import torch

    from .models import ModelConfig, build_model
    from .released_model import load_released_early
    from .transforms import PAPER_EARLY, Transform, preset_for

    path = Path(path)
    if not path.is_file():
        raise MantisDataError(f"checkpoint {path} does not exist; pass --checkpoint a best.pt or best_early.pt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MantisDataError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    if isinstance(ckpt, dict) and "model_config" in ckpt and "model" in ckpt:
        config = ModelConfig.from_dict(ckpt["model_config"])
        model = build_model(config)
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise MantisDataError(f"{path}: weights do not fit its own model config ({exc})") from exc
        transform = Transform(preset_for(ckpt.get("data_config") or {"fusion": config.fusion, "bands": config.bands}), train=False)
    else:  # the released early-fusion state dict (Base.*, fc0, fc1)
        config = ModelConfig()
        model = build_model(config)
        load_released_early(model, path)
        transform = Transform(PAPER_EARLY, train=False)
    model.to(device).eval()
    return ExplainModel(model, config, transform)


def galaxy_seed(target_id: str, seed: int = 0) -> int:
    """The baseline noise seed of a galaxy: a hash of its id and the run's ``seed`` (stable across runs)."""
    h = hashlib.blake2b(f"{seed}:{target_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 1


# --------------------------------------------------------------------------------------------------
# One galaxy
# --------------------------------------------------------------------------------------------------


def _channel_bands(em: ExplainModel) -> dict[str, tuple[str, ...]]:
    """Band of each input channel, per network input (``image`` for early fusion, else per survey)."""
    chans = em.transform.config.kept_channels
    if em.transform.config.fusion == "early":
        return {"image": tuple(chans)}
    return {s: tuple(b for b in chans if b in SURVEYS[s].bands) for s in em.transform.surveys}


def _inputs(em: ExplainModel, cubes: list[dict[str, np.ndarray]]) -> dict:
    """Transform a list of stored cube dicts into network inputs, name -> (len(cubes), C, H, W) on the model's device."""
    import torch

    batch = {
        s: torch.from_numpy(np.stack([np.asarray(c[s], dtype=np.float32) for c in cubes])) for s in em.transform.surveys
    }
    out = em.transform(batch)
    return {k: out[k].to(em.device) for k in _channel_bands(em)}


def _value_fn(em: ExplainModel, amp: bool = False):
    """The value function: composed inputs (+ ``ebv``) -> point estimates (k,) float64."""
    import contextlib

    import torch

    from .models import model_inputs
    from .redshift import GRID

    grid = torch.as_tensor(GRID, dtype=torch.float64, device=em.device)

    @torch.no_grad()
    def value(batch: dict) -> np.ndarray:
        dev = em.device
        ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        with ctx:
            logits = em.model(*model_inputs(batch, em.config))
        p = torch.softmax(logits.double(), dim=1)
        return (p @ grid).cpu().numpy()

    return value


def explain_galaxy(
    model,
    ps1: np.ndarray,
    galex: np.ndarray,
    unwise: np.ndarray,
    ebv,
    *,
    seed: int = 0,
    batch_size: int = 128,
    surveys: bool = True,
    baselines: dict[str, np.ndarray] | None = None,
    amp: bool = False,
) -> dict[str, Any]:
    """Exact Shapley values and MM-SHAP of one galaxy over the bands (and the surveys).

    model: an ``ExplainModel`` (``load_model``) or an ``EarlyFusion``/``LateFusion`` (``wrap_model``).
    ps1, galex, unwise: the stored cubes (5, 170, 170), (2, 32, 32), (2, 32, 32), linear flux.
    ebv: (ebv_csfd, ebv_planck) in mag. seed: the baseline noise seed (``galaxy_seed`` in release runs).
    baselines: precomputed baseline cubes (default: ``baseline_images(..., seed)``).

    Returns a dict: ``bands`` (the players), ``shapley`` and ``mm_shap`` ({band: value}; bands the model
    does not see get 0), ``v_all`` and ``v_none`` (point estimates with every band original / every band
    at its baseline), ``survey_shapley``/``survey_mm_shap`` ({survey: value}, if ``surveys``), ``targets``
    ({band: Target}, None when ``baselines`` were given), ``baselines`` (the cubes), ``seconds`` ({"baseline": s, "model": s}). Redshift units.
    """
    import torch

    em = model if isinstance(model, ExplainModel) else wrap_model(model)
    cubes = {"ps1": np.asarray(ps1), "galex": np.asarray(galex), "unwise": np.asarray(unwise)}
    for s in SURVEY_ORDER:
        if cubes[s].shape != SURVEYS[s].shape:
            raise MantisDataError(f"{s} cube must have shape {SURVEYS[s].shape}, not {cubes[s].shape}")
    t0 = time.perf_counter()
    targets = None
    if baselines is None:
        baselines, targets = baseline_images(cubes["ps1"], cubes["galex"], cubes["unwise"], seed=seed, with_targets=True)
    t1 = time.perf_counter()
    both = _inputs(em, [cubes, baselines])
    original = {k: v[0] for k, v in both.items()}
    baseline = {k: v[1] for k, v in both.items()}
    extra = {"ebv": torch.as_tensor(np.asarray(ebv, dtype=np.float32).reshape(2), device=em.device)}
    value = _value_fn(em, amp)
    chan = _channel_bands(em)
    players = em.bands
    idx = {k: [players.index(b) for b in bands] for k, bands in chan.items()}
    n = len(players)
    v = coalition_values(value, original, baseline, idx, coalition_matrix(n), batch_size, extra)
    phi = shapley_from_values(v, n)
    mm = mm_shap(phi)
    out: dict[str, Any] = {
        "bands": players,
        "shapley": {b: float(phi[players.index(b)]) if b in players else 0.0 for b in BAND_NAMES},
        "mm_shap": {b: float(mm[players.index(b)]) if b in players else 0.0 for b in BAND_NAMES},
        "v_all": float(v[-1]),
        "v_none": float(v[0]),
    }
    if surveys:
        band_survey = {b.name: b.survey for b in BANDS}
        sidx = {k: [SURVEY_ORDER.index(band_survey[b]) for b in bands] for k, bands in chan.items()}
        vs = coalition_values(value, original, baseline, sidx, coalition_matrix(3), batch_size, extra)
        ps = shapley_from_values(vs, 3)
        out["survey_shapley"] = dict(zip(SURVEY_ORDER, map(float, ps), strict=True))
        out["survey_mm_shap"] = dict(zip(SURVEY_ORDER, map(float, mm_shap(ps)), strict=True))
    t2 = time.perf_counter()
    out["targets"] = targets
    out["baselines"] = baselines
    out["seconds"] = {"baseline": t1 - t0, "model": t2 - t1}
    return out
