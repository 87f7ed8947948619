"""Train the paper's early- or late-fusion model on a release, on one process or many under torchrun.

    torchrun --nproc_per_node=N -m training.train --data RELEASE --fusion early --out RUN [options]

DDP (NCCL on GPU, gloo on CPU); cross entropy on the 400 redshift classes; NAdam (lr 3e-4 early fusion,
1e-4 late fusion, weight decay 1e-7); ReduceLROnPlateau on the validation loss (factor 0.5, patience 5, min_lr 1e-6, as the released code);
batch 16 per rank; class-balanced sampling, 1000 batches per rank per epoch; 150 epochs; bf16 autocast on
GPU. After every epoch: validation loss, NMAD, bias, eta and CDE loss (``mantis_data.metrics``). Rank 0
writes ``RUN/log.jsonl`` (one JSON record per line), ``RUN/last.pt`` (after every epoch, and every
``--checkpoint-every`` steps), ``RUN/best.pt`` (lowest validation loss) and shows a progress bar.

A checkpoint holds the model, optimiser, scheduler, loader position (epoch and batches consumed) and every
rank's RNG state; ``--resume RUN/last.pt`` (or ``--resume auto``) continues exactly where it stopped: same
next batches, learning rate and optimiser state as an uninterrupted run. See docs/training.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from mantis_data.errors import MantisDataError
from mantis_data.loading import make_loader, to_device
from mantis_data.metrics import galaxy_terms, nmad, outlier_fraction
from mantis_data.models import BAND_CHOICES, ModelConfig, build_model, model_inputs, parameter_count
from mantis_data.transforms import PAPER_EARLY, PAPER_LATE, Transform

CHECKPOINT_FORMAT = "mantis_training/1"
"""Value of ``format`` in every checkpoint written here."""
DEFAULT_LR = {"early": 3e-4, "late": 1e-4}
"""Initial learning rates of the released models (early / late fusion)."""


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _json_dict(text: str) -> dict[str, Any]:
    """A JSON object given on the command line."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({exc})") from exc
    if not isinstance(d, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return d


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m training.train``."""
    p = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=N -m training.train",
        description="Train the Mantis Shrimp early- or late-fusion baseline (Engel et al.) on a release.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
    g.add_argument("--workers", type=int, default=4, help="loader worker processes per rank")
    g.add_argument(
        "--transform-on",
        default="auto",
        choices=["auto", "workers", "device"],
        help="where the transforms run: loader workers (CPU) or the training device (auto: device on GPU)",
    )
    g = p.add_argument_group("model")
    g.add_argument("--fusion", default="early", choices=["early", "late"])
    g.add_argument("--backbone", default="convnext_large", help="timm name: early-fusion network / late-fusion PS1 encoder")
    g.add_argument("--aux-backbone", default="convnext_small", help="timm name: late-fusion GALEX and unWISE encoders")
    g.add_argument("--backbone-kwargs", type=_json_dict, default={}, metavar="JSON", help="extra timm.create_model arguments")
    g.add_argument("--aux-backbone-kwargs", type=_json_dict, default={}, metavar="JSON", help="the same for --aux-backbone")
    g.add_argument("--init", default=None, metavar="FILE", help="3-channel checkpoint for --backbone (stem rule applied)")
    g.add_argument("--aux-init", default=None, metavar="FILE", help="3-channel checkpoint for --aux-backbone")
    g.add_argument("--hidden-width", type=int, default=2048, help="hidden width of the head")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=150)
    g.add_argument("--batches-per-epoch", type=int, default=1000, help="per rank (balanced orders)")
    g.add_argument("--batch-size", type=int, default=16, help="per rank")
    g.add_argument("--val-batch-size", type=int, default=64, help="per rank")
    g.add_argument("--lr", type=float, default=None, help="initial learning rate (default: 3e-4 early, 1e-4 late)")
    g.add_argument("--weight-decay", type=float, default=1e-7)
    g.add_argument("--plateau-factor", type=float, default=0.5, help="ReduceLROnPlateau factor")
    g.add_argument(
        "--plateau-patience", type=int, default=5,
        help="ReduceLROnPlateau patience (epochs): 5 halves after the sixth epoch without improvement (released code)",
    )
    g.add_argument("--min-lr", type=float, default=1e-6, help="ReduceLROnPlateau floor (released code: 1e-6)")
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps in total")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("run")
    g.add_argument("--out", required=True, help="run folder: log.jsonl, last.pt, best.pt")
    g.add_argument("--resume", default=None, metavar="CKPT", help="checkpoint to continue from ('auto': OUT/last.pt if present)")
    g.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS", help="also save last.pt every N steps (0: epochs only)")
    g.add_argument("--keep-checkpoints", action="store_true", help="keep every checkpoint as step-NNNNNNNN.pt too")
    g.add_argument("--log-every", type=int, default=50, metavar="STEPS", help="training-loss records in log.jsonl")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument("--amp", default="auto", choices=["auto", "bf16", "none"], help="autocast (auto: bf16 on GPU)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms (slower on GPU)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


# --------------------------------------------------------------------------------------------------
# Distributed setup
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    distributed: bool

    @property
    def is_main(self) -> bool:
        """Rank 0: writes logs and checkpoints."""
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistEnv:
    """Init the process group when launched by torchrun (NCCL on GPU, gloo on CPU); pick the device."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise MantisDataError("--device cuda given but CUDA is not available")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    if distributed:
        return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, dev, True)
    return DistEnv(0, 1, 0, dev, False)


def _all_gather_object(env: DistEnv, obj: Any) -> list[Any]:
    """Every rank's ``obj`` (in rank order)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def _all_reduce_sum(env: DistEnv, values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over ranks (float64)."""
    t = torch.tensor(values, dtype=torch.float64, device=env.device if env.device.type == "cuda" else "cpu")
    if env.distributed:
        dist.all_reduce(t)
    return t.tolist()


def _barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def transform_config(fusion: str, bands: str, ps1_crop: int | None = None, resize: int | None = None):
    """The paper's preset for ``fusion`` with the band selection and optional crop / grid overrides."""
    cfg = (PAPER_EARLY if fusion == "early" else PAPER_LATE).with_bands(bands)
    if ps1_crop is not None:
        cfg = replace(cfg, crop={**cfg.crop, "ps1": int(ps1_crop)})
    if resize is not None:
        if fusion != "early":
            raise MantisDataError("--resize applies to early fusion only (late fusion keeps each survey's pixels)")
        cfg = replace(cfg, resize=int(resize))
    return cfg


def data_config(args: argparse.Namespace) -> dict[str, Any]:
    """The input settings a checkpoint records (so evaluation rebuilds the same transform)."""
    return {"fusion": args.fusion, "bands": args.bands, "ps1_crop": args.ps1_crop, "resize": args.resize}


def transforms_of(data_cfg: dict[str, Any]) -> tuple[Transform, Transform]:
    """(training transform with augmentation, evaluation transform) of a checkpoint's data config."""
    cfg = transform_config(data_cfg["fusion"], data_cfg["bands"], data_cfg.get("ps1_crop"), data_cfg.get("resize"))
    return Transform(cfg, train=True), Transform(cfg, train=False)


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def _rng_state(device: torch.device) -> dict[str, Any]:
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


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore RNG states saved by ``_rng_state``."""
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


def _atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


class JsonlLog:
    """Append-only JSON-lines log written by rank 0 (a no-op elsewhere)."""

    def __init__(self, path: Path, enabled: bool):
        self.path = path
        self.enabled = enabled

    def write(self, event: str, **fields: Any) -> None:
        """Append one record ``{"event": event, "time": unix seconds, **fields}``."""
        if not self.enabled:
            return
        rec = {"event": event, "time": round(time.time(), 3), **fields}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")


@torch.no_grad()
def validate(model, loader, config: ModelConfig, env: DistEnv, transform: Transform | None, autocast) -> dict[str, float]:
    """Validation cross entropy, NMAD, bias, eta (%, |r| > 0.05) and CDE loss over every sample once (all ranks)."""
    model.eval()
    ce_sum, n = 0.0, 0
    r_parts, cde_parts = [], []
    for batch in loader:
        batch = to_device(batch, env.device)
        if transform is not None:
            batch = transform(batch)
        with autocast():
            logits = model(*model_inputs(batch, config))
        logp = torch.log_softmax(logits.float(), dim=1)
        valid = batch["valid"]
        label = batch["label"]
        has = valid & (label >= 0)
        ce_sum -= float(logp[has, label[has]].sum())
        n += int(has.sum())
        v = valid.cpu().numpy()
        if v.any():
            terms = galaxy_terms(batch["z"].cpu().numpy()[v], logp.exp().cpu().numpy()[v])
            r_parts.append(terms.r)
            cde_parts.append(terms.cde_term)
    model.train()
    ce_sum, n = _all_reduce_sum(env, [ce_sum, float(n)])
    local = (np.concatenate(r_parts) if r_parts else np.zeros(0), np.concatenate(cde_parts) if cde_parts else np.zeros(0))
    parts = _all_gather_object(env, local)
    r = np.concatenate([p[0] for p in parts])
    cde = np.concatenate([p[1] for p in parts])
    return {
        "val_loss": ce_sum / max(n, 1.0),
        "nmad": nmad(r),
        "bias": float(r.mean()) if r.size else math.nan,
        "eta": outlier_fraction(r),
        "cde_loss": float(cde.mean()) if cde.size else math.nan,
        "n_val": int(r.size),
    }


def make_scheduler(opt: torch.optim.Optimizer, factor: float = 0.5, patience: int = 5, min_lr: float = 1e-6):
    """The released learning-rate schedule: ReduceLROnPlateau on the validation loss (the paper's "six epochs":
    patience 5 halves the rate after the sixth epoch without improvement), never below ``min_lr``."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=factor, patience=patience, min_lr=min_lr)


def _model_config(args: argparse.Namespace) -> ModelConfig:
    return ModelConfig(
        fusion=args.fusion,
        bands=args.bands,
        backbone=args.backbone,
        aux_backbone=args.aux_backbone,
        backbone_kwargs=dict(args.backbone_kwargs),
        aux_backbone_kwargs=dict(args.aux_backbone_kwargs),
        hidden_width=args.hidden_width,
    )


def _resume_path(args: argparse.Namespace, out: Path) -> Path | None:
    if args.resume is None:
        return None
    if args.resume == "auto":
        p = out / "last.pt"
        return p if p.is_file() else None
    return Path(args.resume)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run the training described by ``args``; return the last epoch's record (rank 0) or {}."""
    # DDP's note on 1x1-convolution gradients laid out channels-last: harmless, and once per rank
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    env = setup_distributed(args.device)
    out = Path(args.out)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
    _barrier(env)
    log = JsonlLog(out / "log.jsonl", env.is_main)
    cuda = env.device.type == "cuda"
    amp = args.amp == "bf16" or (args.amp == "auto" and cuda)

    def autocast():
        return torch.autocast(env.device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()

    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif cuda:
        torch.backends.cudnn.benchmark = True

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)  # the same initial weights on every rank

    resume = _resume_path(args, out)
    ckpt = load_checkpoint(resume) if resume is not None else None
    config = _model_config(args)
    dcfg = data_config(args)
    if ckpt is not None:
        for name, ours, theirs in (("model", config.to_dict(), ckpt["model_config"]), ("data", dcfg, ckpt["data_config"])):
            diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
            if diff:
                raise MantisDataError(
                    f"cannot resume from {resume}: its {name} settings differ: "
                    + ", ".join(f"{k} (checkpoint {a!r}, now {b!r})" for k, (a, b) in diff.items())
                )
    model = build_model(config, None if ckpt else args.init, None if ckpt else args.aux_init)
    counts = parameter_count(model)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
    model.to(env.device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    raw_model = model
    if env.distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[env.local_rank] if cuda else None)
    if args.compile:
        model = torch.compile(model)

    lr = args.lr if args.lr is not None else DEFAULT_LR[args.fusion]
    opt = torch.optim.NAdam(raw_model.parameters(), lr=lr, weight_decay=args.weight_decay)
    sched = make_scheduler(opt, args.plateau_factor, args.plateau_patience, args.min_lr)

    train_t, eval_t = transforms_of(dcfg)
    on_device = args.transform_on == "device" or (args.transform_on == "auto" and cuda)
    images = train_t.surveys
    train_loader = make_loader(
        args.data, "train", format=args.format, order=args.order, batch_size=args.batch_size,
        batches_per_epoch=args.batches_per_epoch, seed=args.seed, images=images,
        transform=None if on_device else train_t, num_workers=args.workers, pin_memory=cuda,
    )
    val_loader = make_loader(
        args.data, "validation", format=args.format, order="sequential", batch_size=args.val_batch_size,
        images=images, transform=None if on_device else eval_t, num_workers=args.workers, pin_memory=cuda,
    )

    step, best, done_epoch = 0, math.inf, -1
    loss_sum, loss_n = 0.0, 0  # this rank's running training loss over the current epoch
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        train_loader.load_state_dict(ckpt["loader"])
        step, best, done_epoch = int(ckpt["step"]), float(ckpt["best_val_loss"]), int(ckpt["validated_epoch"])
        ranks = ckpt["rank_state"]
        if len(ranks) == env.world_size:
            _set_rng_state(ranks[env.rank]["rng"], env.device)
            loss_sum, loss_n = float(ranks[env.rank]["loss_sum"]), int(ranks[env.rank]["loss_n"])
        log.write("resume", checkpoint=str(resume), step=step, epoch=int(ckpt["loader"]["epoch"]))
    else:
        torch.manual_seed(args.seed + 7919 * (env.rank + 1))  # per-rank streams (drop path, dropout)
        log.write(
            "start",
            args={k: v for k, v in vars(args).items()},
            world_size=env.world_size,
            device=str(env.device),
            model_config=config.to_dict(),
            parameters=counts,
            train_batches_per_epoch=len(train_loader),
            val_batches=len(val_loader),
        )
    if env.is_main:
        print(
            f"{config.fusion} fusion, bands {config.bands}: "
            + ", ".join(f"{k} {v:,}" for k, v in counts.items())
            + f" parameters; {env.world_size} rank(s) on {env.device.type}",
            file=sys.stderr,
        )

    def save(epoch_state: dict[str, Any], tag: str) -> None:
        ranks = _all_gather_object(env, {"rng": _rng_state(env.device), "loss_sum": loss_sum, "loss_n": loss_n})
        if env.is_main:
            state = {
                "format": CHECKPOINT_FORMAT,
                "model": raw_model.state_dict(),
                "model_config": config.to_dict(),
                "data_config": dcfg,
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "loader": epoch_state,
                "step": step,
                "validated_epoch": done_epoch,
                "best_val_loss": best,
                "rank_state": ranks,
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "world_size": env.world_size,
            }
            _atomic_save(state, out / "last.pt")
            if tag == "best":
                _atomic_save(state, out / "best.pt")
            if args.keep_checkpoints:
                _atomic_save(state, out / f"step-{step:08d}.pt")
        _barrier(env)

    epoch = int(train_loader.state_dict()["epoch"])
    if done_epoch >= epoch:  # the checkpoint's epoch was finished and validated
        epoch = done_epoch + 1
    resumed_epoch = epoch if ckpt is not None else None
    record: dict[str, Any] = {}
    stop = args.max_steps is not None and step >= args.max_steps
    while epoch < args.epochs and not stop:
        train_loader.set_epoch(epoch)
        first = 0
        if epoch == resumed_epoch and int(ckpt["loader"]["epoch"]) == epoch:
            first = int(ckpt["loader"]["batches_done"])  # continue the checkpoint's epoch and its loss sums
        else:
            loss_sum, loss_n = 0.0, 0
        ep_sum = torch.zeros((), dtype=torch.float64, device=env.device)  # losses since loss_sum was updated
        ep_n = 0
        win_sum = torch.zeros((), dtype=torch.float64, device=env.device)  # losses since the last log record
        win_n, t_win = 0, time.perf_counter()
        bar = None
        if env.is_main and not args.no_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(train_loader), initial=first, desc=f"epoch {epoch}", unit="batch", leave=False)
        for batch in train_loader:
            batch = to_device(batch, env.device)
            if on_device:
                batch = train_t(batch)
            x, ebv = model_inputs(batch, config)
            if cuda and isinstance(x, torch.Tensor):
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                logits = model(x, ebv)
            loss = F.cross_entropy(logits.float(), batch["label"], ignore_index=-1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            ep_sum += loss.detach()
            ep_n += 1
            win_sum += loss.detach()
            win_n += 1
            if bar is not None:
                bar.update(1)
            if step % max(args.log_every, 1) == 0:
                total, count = _all_reduce_sum(env, [float(win_sum), float(win_n)])
                dt = time.perf_counter() - t_win
                mean = total / max(count, 1.0)
                log.write(
                    "train", step=step, epoch=epoch, batch=train_loader.state_dict()["batches_done"],
                    loss=mean, lr=opt.param_groups[0]["lr"],
                    samples_per_s=round(count * args.batch_size / max(dt, 1e-9), 2),
                )
                if bar is not None:
                    bar.set_postfix(loss=f"{mean:.3f}")
                win_sum.zero_()
                win_n, t_win = 0, time.perf_counter()
            stop = args.max_steps is not None and step >= args.max_steps
            if stop or (args.checkpoint_every and step % args.checkpoint_every == 0):
                loss_sum, loss_n = loss_sum + float(ep_sum), loss_n + ep_n
                ep_sum.zero_()
                ep_n = 0
                save(train_loader.state_dict(), "step")
            if stop:
                break
        if bar is not None:
            bar.close()
        if stop:
            break
        loss_sum, loss_n = loss_sum + float(ep_sum), loss_n + ep_n
        tot, cnt = _all_reduce_sum(env, [loss_sum, float(loss_n)])
        metrics = validate(raw_model, val_loader, config, env, eval_t if on_device else None, autocast)
        sched.step(metrics["val_loss"])
        done_epoch = epoch
        improved = metrics["val_loss"] < best
        best = min(best, metrics["val_loss"])
        record = {"epoch": epoch, "step": step, "train_loss": tot / max(cnt, 1.0), **metrics,
                  "lr": opt.param_groups[0]["lr"], "best_val_loss": best}
        log.write("epoch", **record)
        if env.is_main:
            print(
                f"epoch {epoch}: train {record['train_loss']:.4f}, val {metrics['val_loss']:.4f}, "
                f"NMAD {metrics['nmad']:.4f}, bias {metrics['bias']:+.4f}, eta {metrics['eta']:.1f}%, "
                f"CDE {metrics['cde_loss']:.3f}, lr {record['lr']:.3g}",
                file=sys.stderr,
            )
        save(train_loader.state_dict(), "best" if improved else "epoch")
        epoch += 1
    log.write("end", step=step, epoch=epoch)
    del train_loader, val_loader
    if env.distributed:
        dist.barrier()
        dist.destroy_process_group()
    return record if env.is_main else {}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m training.train``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        train(args)
    except MantisDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
