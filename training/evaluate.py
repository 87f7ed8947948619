"""Evaluate a training checkpoint on a split: predictions file, then the metrics report.

    python -m training.evaluate --checkpoint RUN/best.pt --data RELEASE --split test --out REPORT [--prior]

Writes ``REPORT/predictions.parquet`` (the format of docs/predictions.md, PMFs in
``REPORT/predictions_pmf.npy``), then ``mantis_data.evaluate.evaluate`` writes ``metrics.md``,
``metrics.json`` and the plots into ``REPORT``. With ``--prior``, the constant prior (every galaxy gets the
training split's class histogram as its PMF) is written and evaluated the same way into ``REPORT/prior``,
and both are printed side by side. One process (one GPU or the CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mantis_data.errors import MantisDataError
from mantis_data.evaluate import evaluate as evaluate_report
from mantis_data.evaluate import write_predictions
from mantis_data.loading import make_loader, split_redshifts, to_device
from mantis_data.metrics import METRIC_NAMES
from mantis_data.models import ModelConfig, build_model, model_inputs
from mantis_data.redshift import N_BINS, redshift_class

from .checkpoint import load_checkpoint
from .train import transforms_of

COMPARED = ("nmad", "bias", "outlier_fraction", "cde_loss")
"""Metrics printed side by side with ``--prior``."""


def prior_pmf(root: str | Path, split: str = "train") -> np.ndarray:
    """The constant prior: the normalised histogram of ``split``'s redshift classes (400,), float64."""
    labels = redshift_class(split_redshifts(root, split), out_of_range="mask")
    counts = np.bincount(labels[labels >= 0], minlength=N_BINS).astype(np.float64)
    if counts.sum() == 0:
        raise MantisDataError(f"split {split!r} of {root} has no redshift inside the label grid")
    return counts / counts.sum()


def _surveys(root: str | Path, split: str, target_ids: np.ndarray) -> np.ndarray | None:
    """Spectroscopic survey of each target id, from the release's Parquet shards (None if unavailable)."""
    try:
        import pyarrow.parquet as pq

        from mantis_data.release import open_release

        files = open_release(root).shards("parquet", split)
        table = {}
        for f in files:
            t = pq.read_table(f, columns=["target_id", "survey"])
            table.update(zip(t.column("target_id").to_pylist(), t.column("survey").to_pylist(), strict=True))
        return np.array([table.get(t) or "(none)" for t in target_ids], dtype=object).astype(str)
    except Exception:  # no Parquet folder, or no survey column: the report just has no per-survey rows
        return None


@torch.no_grad()
def predict(
    checkpoint: str | Path,
    root: str | Path,
    split: str = "test",
    *,
    format: str = "webdataset",
    batch_size: int = 64,
    workers: int = 2,
    device: str = "auto",
    amp: str = "auto",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target_id, z, PMF (n, 400) float32) of every galaxy of ``split``, in release order."""
    ckpt = load_checkpoint(checkpoint)
    config = ModelConfig.from_dict(ckpt["model_config"])
    model = build_model(config)
    model.load_state_dict(ckpt["model"])
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    dev = torch.device("cuda" if use_cuda else "cpu")
    model.to(dev).eval()
    bf16 = amp == "bf16" or (amp == "auto" and use_cuda)
    _, eval_t = transforms_of(ckpt["data_config"])
    loader = make_loader(
        root, split, format=format, order="sequential", batch_size=batch_size, num_workers=workers,
        transform=eval_t, images=eval_t.surveys, rank=0, world_size=1, pin_memory=use_cuda,
    )
    ids: list[str] = []
    zs, pmfs = [], []
    batches = loader
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(loader, total=len(loader), desc=f"predict {split}", unit="batch")
    for batch in batches:
        batch = to_device(batch, dev)
        ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            logits = model(*model_inputs(batch, config))
        valid = batch["valid"].cpu().numpy()
        pmfs.append(torch.softmax(logits.float(), dim=1).cpu().numpy()[valid])
        zs.append(batch["z"].cpu().numpy()[valid])
        ids += [t for t, v in zip(batch["target_id"], valid, strict=True) if v]
    pmf = np.concatenate(pmfs).astype(np.float32) if pmfs else np.zeros((0, N_BINS), np.float32)
    return np.array(ids, dtype=object).astype(str), np.concatenate(zs) if zs else np.zeros(0), pmf


def write_report(out: Path, ids: np.ndarray, z: np.ndarray, pmf: np.ndarray, survey, bootstrap: int, seed: int) -> dict:
    """Write predictions (.parquet + .npy) and the metrics report into ``out``; return metrics.json's content."""
    out.mkdir(parents=True, exist_ok=True)
    npy = out / "predictions_pmf.npy"
    np.save(npy, np.ascontiguousarray(pmf, dtype=np.float32))
    preds = write_predictions(out / "predictions.parquet", target_id=ids, z=z, pmf=npy, survey=survey)
    return evaluate_report(preds, out, bootstrap=bootstrap, seed=seed)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m training.evaluate``."""
    p = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description="Predict a split with a training checkpoint and write the metrics report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint written by training.train (best.pt, last.pt)")
    p.add_argument("--data", required=True, help="release folder")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--format", default="webdataset", choices=["webdataset", "parquet"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "none"])
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per table row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prior", action="store_true", help="also evaluate the constant prior (training class histogram)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m training.evaluate``; returns the exit status."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        ids, z, pmf = predict(
            args.checkpoint, args.data, args.split, format=args.format, batch_size=args.batch_size,
            workers=args.workers, device=args.device, amp=args.amp, progress=not args.no_progress,
        )
        survey = _surveys(args.data, args.split, ids)
        report = write_report(out, ids, z, pmf, survey, args.bootstrap, args.seed)
        row = report["rows"][0]
        summary: dict[str, Any] = {"n": report["n"], "model": {m: row[m]["value"] for m in METRIC_NAMES}}
        if args.prior:
            prior = prior_pmf(args.data, "train")
            prow = write_report(out / "prior", ids, z, np.broadcast_to(prior, pmf.shape), survey, args.bootstrap, args.seed)
            summary["prior"] = {m: prow["rows"][0][m]["value"] for m in METRIC_NAMES}
            print(f"{args.split}: {len(z):,} galaxies")
            print(f"{'':8s}" + "".join(f"{m:>18s}" for m in COMPARED))
            for name in ("model", "prior"):
                vals = summary[name]
                print(f"{name:8s}" + "".join(f"{_fmt(vals[m]):>18s}" for m in COMPARED))
        else:
            print(f"{args.split}: {len(z):,} galaxies: " + ", ".join(f"{m} {_fmt(summary['model'][m])}" for m in COMPARED))
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {out / 'predictions.parquet'}, {out / 'metrics.md'}" + (f", {out / 'prior'}" if args.prior else ""))
    except MantisDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _fmt(x: float | None) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


if __name__ == "__main__":
    sys.exit(main())
