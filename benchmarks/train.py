"""Benchmark: training samples/s of one process against its compute ceiling on synthetic batches.

    python benchmarks/train.py [--release PATH | --n 600] [--fusion early] [--backbone convnext_large]
                               [--aux-backbone convnext_small] [--batch-size 16] [--steps 50]
                               [--workers 8] [--device auto]

Side by side, in one run, with one model:

  (a) the ceiling: forward, backward and NAdam step on batches of the transform's output shapes that are
      already on the device (no loading, no transforms);
  (b) the input pipeline alone: ``make_loader(order="balanced")`` plus the paper's training transforms
      (in the workers on the CPU, on the device after the transfer on a GPU), no model;
  (c) the training step of ``training.train``: (b) feeding (a).

It prints samples/s of each and the ratios (c)/(a) (how close training runs to the model's speed) and
(b)/(a) (how much headroom the input pipeline has). One process, no DDP: multiply by the GPU count for a
node when (b)/(a) stays above 1 per GPU. A demo release is built into a temporary folder unless
``--release`` is given; on a CPU use a small ``--backbone`` (e.g. convnext_atto) and few ``--steps``.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mantis_data.loading import make_loader, to_device  # noqa: E402
from mantis_data.models import ModelConfig, build_model, model_inputs  # noqa: E402
from training.train import transforms_of  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model, opt, batch, config, autocast) -> None:
    """One training step of ``training.train`` on a transformed batch on the device."""
    with autocast():
        logits = model(*model_inputs(batch, config))
    loss = F.cross_entropy(logits.float(), batch["label"], ignore_index=-1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _rate(fn, steps: int, batch_size: int, device: torch.device, warmup: int = 3) -> float:
    """Samples/s of ``fn(i)`` over ``steps`` calls after ``warmup`` calls."""
    for i in range(warmup):
        fn(i)
    _sync(device)
    t = time.perf_counter()
    for i in range(steps):
        fn(i)
    _sync(device)
    return steps * batch_size / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements and print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--release", type=Path, default=None)
    p.add_argument("--n", type=int, default=600, help="galaxies of the demo release built when --release is absent")
    p.add_argument("--fusion", default="early", choices=["early", "late"])
    p.add_argument("--bands", default="all")
    p.add_argument("--backbone", default="convnext_large")
    p.add_argument("--aux-backbone", default="convnext_small")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = p.parse_args(argv)

    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    device = torch.device("cuda" if cuda else "cpu")
    tmp = None
    root = args.release
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-train-")
        root = Path(tmp.name) / "ms"
        subprocess.run([sys.executable, "-m", "builders", "demo", "--out", str(root), "--n", str(args.n),
                        "--shard-mb", "8"], check=True, cwd=Path(__file__).resolve().parents[1],
                       stdout=subprocess.DEVNULL)

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()

    config = ModelConfig(fusion=args.fusion, bands=args.bands, backbone=args.backbone, aux_backbone=args.aux_backbone)
    model = build_model(config).to(device)
    opt = torch.optim.NAdam(model.parameters(), lr=1e-4, weight_decay=1e-7)
    train_t, _ = transforms_of({"fusion": args.fusion, "bands": args.bands, "ps1_crop": None, "resize": None})
    bs = args.batch_size

    synthetic = {k: torch.rand((bs, *shape), device=device) for k, shape in train_t.output_shapes().items()}
    synthetic["ebv"] = torch.rand((bs, 2), device=device) * 0.1
    synthetic["label"] = torch.randint(0, 400, (bs,), device=device)
    ceiling = _rate(lambda i: _step(model, opt, synthetic, config, autocast), args.steps, bs, device)

    n_batches = args.steps + 3
    loader = make_loader(root, "train", order="balanced", batch_size=bs, batches_per_epoch=n_batches,
                         num_workers=args.workers, images=train_t.surveys, pin_memory=cuda,
                         transform=None if cuda else train_t)

    def batches():
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            for b in loader:
                b = to_device(b, device)
                yield train_t(b) if cuda else b
            epoch += 1

    it = batches()
    pipeline = _rate(lambda i: next(it), args.steps, bs, device)
    it = batches()
    full = _rate(lambda i: _step(model, opt, next(it), config, autocast), args.steps, bs, device)

    name = args.backbone if args.fusion == "early" else f"{args.backbone} + 2 x {args.aux_backbone}"
    print(f"{args.fusion} fusion, {name}, batch {bs}, {args.workers} workers, {device.type}"
          + (" (bf16 autocast)" if cuda else ""))
    print(f"  (a) model step on synthetic batches   {ceiling:10.1f} samples/s")
    print(f"  (b) loader + transforms, no model     {pipeline:10.1f} samples/s   (b)/(a) = {pipeline / ceiling:.2f}")
    print(f"  (c) training step (b) -> (a)          {full:10.1f} samples/s   (c)/(a) = {full / ceiling:.2f}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
