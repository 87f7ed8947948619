"""The command line of ``python -m training.train``: its argument parser and the JSON-object argument type."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mantis_data.models import BAND_CHOICES


def _json_dict(text: str) -> dict[str, Any]:
    """A JSON object given on the command line."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({exc})") from exc
    if not isinstance(d, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return d


EXAMPLES = """python -m training.train --data /tmp/ms --out /tmp/run --epochs 2 --batches-per-epoch 20 --device cpu
torchrun --nproc_per_node=4 -m training.train --data RELEASE --out RUN/
torchrun --nproc_per_node=4 -m training.train --data RELEASE --out RUN/ --resume auto"""
"""Examples shown at the end of the help."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m training.train`` (the house style of mantis_data._cli)."""
    from mantis_data._cli import HelpFormatter, nonnegative_int, positive_float, positive_int, style

    p = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=N -m training.train",
        description="Train the Mantis Shrimp early- or late-fusion baseline (Engel et al.) on a release.",
        formatter_class=HelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, help="release folder (holds MANIFEST.json)")
    g.add_argument("--format", default="webdataset", choices=["webdataset", "parquet"], help="shards to read")
    g.add_argument(
        "--order",
        default="balanced",
        choices=["balanced", "balanced-stream", "shuffle"],
        help="training sampling: the paper's class-balanced draws with replacement, or alternatives",
    )
    g.add_argument("--bands", default="all", choices=BAND_CHOICES, help="band selection (ablation)")
    g.add_argument("--ps1-crop", type=int, default=None, metavar="PX", help="Pan-STARRS centre crop (default: preset, 120)")
    g.add_argument(
        "--resize", type=int, default=None, metavar="PX", help="early fusion: common grid side (default: the PS1 crop)"
    )
    g.add_argument("--workers", type=nonnegative_int, default=4, help="loader worker processes per rank (0: in the main process)")
    g.add_argument(
        "--transform-on",
        default="auto",
        choices=["auto", "workers", "device"],
        help="where the transforms run: loader workers (CPU) or the training device (auto: device on GPU)",
    )
    g = p.add_argument_group("model")
    g.add_argument("--fusion", default="early", choices=["early", "late"], help="early: one network on 9 resampled bands; late: one encoder per survey")
    g.add_argument("--backbone", default="convnext_large", help="timm name: early-fusion network / late-fusion PS1 encoder")
    g.add_argument("--aux-backbone", default="convnext_small", help="timm name: late-fusion GALEX and unWISE encoders")
    g.add_argument("--backbone-kwargs", type=_json_dict, default={}, metavar="JSON", help="extra timm.create_model arguments")
    g.add_argument("--aux-backbone-kwargs", type=_json_dict, default={}, metavar="JSON", help="the same for --aux-backbone")
    g.add_argument("--init", default=None, metavar="FILE", help="3-channel checkpoint for --backbone (stem rule applied)")
    g.add_argument("--aux-init", default=None, metavar="FILE", help="3-channel checkpoint for --aux-backbone")
    g.add_argument("--hidden-width", type=int, default=2048, help="hidden width of the head")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=positive_int, default=150, help="training epochs (the paper's 150)")
    g.add_argument("--batches-per-epoch", type=positive_int, default=1000, help="per rank (balanced orders)")
    g.add_argument("--batch-size", type=positive_int, default=16, help="per rank")
    g.add_argument("--val-batch-size", type=positive_int, default=64, help="per rank")
    g.add_argument("--lr", type=positive_float, default=None, help="initial learning rate (default: 3e-4 early, 1e-4 late)")
    g.add_argument("--weight-decay", type=float, default=1e-7, help="NAdam weight decay")
    g.add_argument("--plateau-factor", type=float, default=0.5, help="ReduceLROnPlateau factor")
    g.add_argument(
        "--plateau-patience", type=int, default=5,
        help="ReduceLROnPlateau patience (epochs): 5 halves after the sixth epoch without improvement (released code)",
    )
    g.add_argument("--min-lr", type=float, default=1e-6, help="ReduceLROnPlateau floor (released code: 1e-6)")
    g.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many optimiser steps in total")
    g.add_argument("--seed", type=int, default=0, help="random seed of the initialisation, sampling and augmentation")
    g = p.add_argument_group("run")
    g.add_argument("--out", required=True, help="run folder: log.jsonl, last.pt, best.pt")
    g.add_argument("--resume", default=None, metavar="CKPT", help="checkpoint to continue from ('auto': OUT/last.pt if present)")
    g.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS", help="also save last.pt every N steps (0: epochs only)")
    g.add_argument("--keep-checkpoints", action="store_true", help="keep every checkpoint as step-NNNNNNNN.pt too")
    g.add_argument("--log-every", type=int, default=50, metavar="STEPS", help="training-loss records in log.jsonl")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train (auto: cuda if available)")
    g.add_argument("--amp", default="auto", choices=["auto", "bf16", "none"], help="autocast (auto: bf16 on GPU)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms (slower on GPU)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    style(p, {"": EXAMPLES})
    return p
