"""Checkpoints of the reference training: RNG states, atomic save, load and check, the resume path."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mantis_data._io import atomic_path
from mantis_data.errors import MantisDataError

CHECKPOINT_FORMAT = "mantis_training/1"
"""Value of ``format`` in every checkpoint written here."""


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore RNG states saved by ``rng_state``."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint (on the CPU), checked to be one."""
    path = Path(path)
    if not path.is_file():
        raise MantisDataError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MantisDataError(f"{path} is not a readable training checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise MantisDataError(f"{path} is not a checkpoint written by training.train (format {CHECKPOINT_FORMAT})")
    return ckpt


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename (mantis_data._io)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_checkpoints(state: dict[str, Any], out: Path, tag: str, keep: bool) -> None:
    """``out/last.pt`` always, ``out/best.pt`` when ``tag == "best"``, ``out/step-NNNNNNNN.pt`` when ``keep``."""
    atomic_save(state, out / "last.pt")
    if tag == "best":
        atomic_save(state, out / "best.pt")
    if keep:
        atomic_save(state, out / f"step-{int(state['step']):08d}.pt")


def resume_path(resume: str | None, out: Path) -> Path | None:
    """The checkpoint ``--resume`` names (``"auto"``: ``out/last.pt`` when it exists)."""
    if resume is None:
        return None
    if resume == "auto":
        p = out / "last.pt"
        return p if p.is_file() else None
    return Path(resume)
