"""Print the parameter counts of the paper's models (built on the meta device: no memory, no weights).

    python -m training.param_counts [--bands all] [--backbone convnext_large] [--aux-backbone convnext_small]

Early fusion: ConvNeXt-Large with 9 input channels; late fusion: ConvNeXt-Large (5 Pan-STARRS channels)
and two ConvNeXt-Small (GALEX, unWISE: 2 channels each); both with the E(B-V) + 2048-wide head, 400 classes.
``--bands`` prints an ablation (late fusion loses whole encoders); ``--all-ablations`` prints every one.
"""

from __future__ import annotations

import argparse
import sys

import torch

from mantis_data.models import BAND_CHOICES, ModelConfig, build_model, parameter_count


def counts(config: ModelConfig) -> dict[str, int]:
    """Parameters per part and in total of the model of ``config`` (built on the meta device)."""
    with torch.device("meta"):
        return parameter_count(build_model(config))


def table(configs: list[ModelConfig]) -> str:
    """One line per part of each model: fusion, bands, part, backbone, parameters."""
    lines = [f"{'fusion':6s} {'bands':10s} {'part':16s} {'network':16s} {'parameters':>14s}"]
    for c in configs:
        for part, n in counts(c).items():
            if part.startswith("encoder["):
                net = c.backbone if part == "encoder[ps1]" else c.aux_backbone
            elif part == "backbone":
                net = c.backbone
            elif part == "head":
                net = f"mlp {c.hidden_width}"
            else:
                net = ""
            lines.append(f"{c.fusion:6s} {c.bands:10s} {part:16s} {net:16s} {n:>14,d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m training.param_counts``."""
    p = argparse.ArgumentParser(prog="python -m training.param_counts", description=__doc__.split("\n")[0])
    p.add_argument("--bands", default="all", choices=BAND_CHOICES)
    p.add_argument("--all-ablations", action="store_true", help="every band selection")
    p.add_argument("--backbone", default="convnext_large")
    p.add_argument("--aux-backbone", default="convnext_small")
    p.add_argument("--hidden-width", type=int, default=2048)
    args = p.parse_args(argv)
    bands = BAND_CHOICES if args.all_ablations else (args.bands,)
    configs = [
        ModelConfig(fusion=f, bands=b, backbone=args.backbone, aux_backbone=args.aux_backbone, hidden_width=args.hidden_width)
        for f in ("early", "late")
        for b in bands
    ]
    print(table(configs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
