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
import random
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mantis_data.errors import MantisDataError
from mantis_data.loading import make_loader, to_device
from mantis_data.metrics import galaxy_terms, nmad, outlier_fraction
from mantis_data.models import ModelConfig, build_model, model_inputs, parameter_count
from mantis_data.transforms import Transform, preset_for

from .checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    resume_path,
    rng_state,
    set_rng_state,
    write_checkpoints,
)
from .dist import DistEnv, all_gather_object, all_reduce_sum, barrier, setup_distributed, shutdown
from .options import EXAMPLES, _json_dict, build_parser  # noqa: F401  (re-exported: the CLI lived here)

DEFAULT_LR = {"early": 3e-4, "late": 1e-4}
"""Initial learning rates of the released models (early / late fusion)."""


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def data_config(args: argparse.Namespace) -> dict[str, Any]:
    """The input settings a checkpoint records (so evaluation rebuilds the same transform)."""
    return {"fusion": args.fusion, "bands": args.bands, "ps1_crop": args.ps1_crop, "resize": args.resize}


def transforms_of(data_cfg: dict[str, Any]) -> tuple[Transform, Transform]:
    """(training transform with augmentation, evaluation transform) of a checkpoint's data config."""
    cfg = preset_for(data_cfg)
    return Transform(cfg, train=True), Transform(cfg, train=False)



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
def evaluate(model, loader, config: ModelConfig, env: DistEnv, transform: Transform | None, autocast) -> dict[str, float]:
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
    ce_sum, n = all_reduce_sum(env, [ce_sum, float(n)])
    local = (np.concatenate(r_parts) if r_parts else np.zeros(0), np.concatenate(cde_parts) if cde_parts else np.zeros(0))
    parts = all_gather_object(env, local)
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



@dataclass
class RunState:
    """What a checkpoint carries besides weights and optimiser: step, best loss, epoch, loss sums."""

    step: int = 0
    best: float = math.inf
    done_epoch: int = -1  # last epoch finished and validated
    loss_sum: float = 0.0  # this rank's training loss over the current epoch (flushed at checkpoints)
    loss_n: int = 0
    stop: bool = False


@dataclass
class Run:
    """Everything one training run holds: process, model, optimisation, data, log, output."""

    args: argparse.Namespace
    env: DistEnv
    out: Path
    log: JsonlLog
    config: ModelConfig
    data_cfg: dict[str, Any]
    model: Any  # what the forward pass calls (DDP / compiled)
    raw_model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    train_t: Transform
    eval_t: Transform
    on_device: bool
    amp: bool
    train_loader: Any
    val_loader: Any
    state: RunState

    @property
    def cuda(self) -> bool:
        """Whether the run is on a GPU."""
        return self.env.device.type == "cuda"

    def autocast(self):
        """bf16 autocast when enabled, else a no-op context."""
        return torch.autocast(self.env.device.type, dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    def save(self, loader_state: dict[str, Any], tag: str) -> None:
        """Checkpoint (rank 0 writes; every rank contributes its RNG state and loss sums)."""
        s = self.state
        ranks = all_gather_object(self.env, {"rng": rng_state(self.env.device), "loss_sum": s.loss_sum, "loss_n": s.loss_n})
        if self.env.is_main:
            ckpt = {
                "format": CHECKPOINT_FORMAT,
                "model": self.raw_model.state_dict(),
                "model_config": self.config.to_dict(),
                "data_config": self.data_cfg,
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "loader": loader_state,
                "step": s.step,
                "validated_epoch": s.done_epoch,
                "best_val_loss": s.best,
                "rank_state": ranks,
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self.args).items()},
                "world_size": self.env.world_size,
            }
            write_checkpoints(ckpt, self.out, tag, self.args.keep_checkpoints)
        barrier(self.env)


def _check_resumable(resume: Path, ckpt: dict, config: ModelConfig, dcfg: dict) -> None:
    for name, ours, theirs in (("model", config.to_dict(), ckpt["model_config"]), ("data", dcfg, ckpt["data_config"])):
        diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
        if diff:
            raise MantisDataError(
                f"cannot resume from {resume}: its {name} settings differ: "
                + ", ".join(f"{k} (checkpoint {a!r}, now {b!r})" for k, (a, b) in diff.items())
            )


def setup(args: argparse.Namespace) -> tuple[Run, dict | None]:
    """Process group, seeds, model, optimiser, scheduler and loaders of a run; (run, checkpoint or None)."""
    # DDP's note on 1x1-convolution gradients laid out channels-last: harmless, and once per rank
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    env = setup_distributed(args.device)
    out = Path(args.out)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
    barrier(env)
    cuda = env.device.type == "cuda"
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif cuda:
        torch.backends.cudnn.benchmark = True
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)  # the same initial weights on every rank

    resume = resume_path(args.resume, out)
    ckpt = load_checkpoint(resume) if resume is not None else None
    config = _model_config(args)
    dcfg = data_config(args)
    if ckpt is not None:
        _check_resumable(resume, ckpt, config, dcfg)
    model = build_model(config, None if ckpt else args.init, None if ckpt else args.aux_init)
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
    run = Run(
        args=args, env=env, out=out, log=JsonlLog(out / "log.jsonl", env.is_main), config=config, data_cfg=dcfg,
        model=model, raw_model=raw_model, opt=opt, sched=sched, train_t=train_t, eval_t=eval_t,
        on_device=on_device, amp=args.amp == "bf16" or (args.amp == "auto" and cuda),
        train_loader=train_loader, val_loader=val_loader, state=RunState(),
    )
    return run, ckpt


def restore(run: Run, ckpt: dict | None, resume_from: str | None) -> None:
    """Load a checkpoint's optimiser, scheduler, loader position, RNG and loss sums (or log the start)."""
    env, s = run.env, run.state
    if ckpt is not None:
        run.opt.load_state_dict(ckpt["optimizer"])
        run.sched.load_state_dict(ckpt["scheduler"])
        run.train_loader.load_state_dict(ckpt["loader"])
        s.step, s.best, s.done_epoch = int(ckpt["step"]), float(ckpt["best_val_loss"]), int(ckpt["validated_epoch"])
        ranks = ckpt["rank_state"]
        if len(ranks) == env.world_size:
            set_rng_state(ranks[env.rank]["rng"], env.device)
            s.loss_sum, s.loss_n = float(ranks[env.rank]["loss_sum"]), int(ranks[env.rank]["loss_n"])
        run.log.write("resume", checkpoint=str(resume_from), step=s.step, epoch=int(ckpt["loader"]["epoch"]))
    else:
        torch.manual_seed(run.args.seed + 7919 * (env.rank + 1))  # per-rank streams (drop path, dropout)
        run.log.write(
            "start",
            args={k: v for k, v in vars(run.args).items()},
            world_size=env.world_size,
            device=str(env.device),
            model_config=run.config.to_dict(),
            parameters=parameter_count(run.raw_model),
            train_batches_per_epoch=len(run.train_loader),
            val_batches=len(run.val_loader),
        )
    if env.is_main:
        print(
            f"{run.config.fusion} fusion, bands {run.config.bands}: "
            + ", ".join(f"{k} {v:,}" for k, v in parameter_count(run.raw_model).items())
            + f" parameters; {env.world_size} rank(s) on {env.device.type}",
            file=sys.stderr,
        )


def train_one_epoch(run: Run, epoch: int, first: int) -> None:
    """Train on the batches of ``epoch`` from batch ``first``; log, checkpoint every N steps, stop at max steps."""
    args, env, s, loader = run.args, run.env, run.state, run.train_loader
    ep_sum = torch.zeros((), dtype=torch.float64, device=env.device)  # losses since loss_sum was updated
    ep_n = 0
    win_sum = torch.zeros((), dtype=torch.float64, device=env.device)  # losses since the last log record
    win_n, t_win = 0, time.perf_counter()
    bar = None
    if env.is_main and not args.no_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(loader), initial=first, desc=f"epoch {epoch}", unit="batch", leave=False)
    for batch in loader:
        batch = to_device(batch, env.device)
        if run.on_device:
            batch = run.train_t(batch)
        x, ebv = model_inputs(batch, run.config)
        if run.cuda and isinstance(x, torch.Tensor):
            x = x.contiguous(memory_format=torch.channels_last)
        with run.autocast():
            logits = run.model(x, ebv)
        loss = F.cross_entropy(logits.float(), batch["label"], ignore_index=-1)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        s.step += 1
        ep_sum += loss.detach()
        ep_n += 1
        win_sum += loss.detach()
        win_n += 1
        if bar is not None:
            bar.update(1)
        if s.step % max(args.log_every, 1) == 0:
            total, count = all_reduce_sum(env, [float(win_sum), float(win_n)])
            dt = time.perf_counter() - t_win
            mean = total / max(count, 1.0)
            run.log.write(
                "train", step=s.step, epoch=epoch, batch=loader.state_dict()["batches_done"],
                loss=mean, lr=run.opt.param_groups[0]["lr"],
                samples_per_s=round(count * args.batch_size / max(dt, 1e-9), 2),
            )
            if bar is not None:
                bar.set_postfix(loss=f"{mean:.3f}")
            win_sum.zero_()
            win_n, t_win = 0, time.perf_counter()
        s.stop = args.max_steps is not None and s.step >= args.max_steps
        if s.stop or (args.checkpoint_every and s.step % args.checkpoint_every == 0):
            s.loss_sum, s.loss_n = s.loss_sum + float(ep_sum), s.loss_n + ep_n
            ep_sum.zero_()
            ep_n = 0
            run.save(loader.state_dict(), "step")
        if s.stop:
            break
    if bar is not None:
        bar.close()
    s.loss_sum, s.loss_n = s.loss_sum + float(ep_sum), s.loss_n + ep_n


def end_of_epoch(run: Run, epoch: int) -> dict[str, Any]:
    """Validate, step the scheduler, log and checkpoint after a finished epoch; return its record."""
    s = run.state
    tot, cnt = all_reduce_sum(run.env, [s.loss_sum, float(s.loss_n)])
    metrics = evaluate(run.raw_model, run.val_loader, run.config, run.env, run.eval_t if run.on_device else None, run.autocast)
    run.sched.step(metrics["val_loss"])
    s.done_epoch = epoch
    improved = metrics["val_loss"] < s.best
    s.best = min(s.best, metrics["val_loss"])
    record = {"epoch": epoch, "step": s.step, "train_loss": tot / max(cnt, 1.0), **metrics,
              "lr": run.opt.param_groups[0]["lr"], "best_val_loss": s.best}
    run.log.write("epoch", **record)
    if run.env.is_main:
        print(
            f"epoch {epoch}: train {record['train_loss']:.4f}, val {metrics['val_loss']:.4f}, "
            f"NMAD {metrics['nmad']:.4f}, bias {metrics['bias']:+.4f}, eta {metrics['eta']:.1f}%, "
            f"CDE {metrics['cde_loss']:.3f}, lr {record['lr']:.3g}",
            file=sys.stderr,
        )
    run.save(run.train_loader.state_dict(), "best" if improved else "epoch")
    return record


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run the training described by ``args``; return the last epoch's record (rank 0) or {}."""
    run, ckpt = setup(args)
    restore(run, ckpt, args.resume)
    s = run.state
    epoch = int(run.train_loader.state_dict()["epoch"])
    if s.done_epoch >= epoch:  # the checkpoint's epoch was finished and validated
        epoch = s.done_epoch + 1
    resumed_epoch = epoch if ckpt is not None else None
    record: dict[str, Any] = {}
    s.stop = args.max_steps is not None and s.step >= args.max_steps
    while epoch < args.epochs and not s.stop:
        run.train_loader.set_epoch(epoch)
        first = 0
        if epoch == resumed_epoch and int(ckpt["loader"]["epoch"]) == epoch:
            first = int(ckpt["loader"]["batches_done"])  # continue the checkpoint's epoch and its loss sums
        else:
            s.loss_sum, s.loss_n = 0.0, 0
        train_one_epoch(run, epoch, first)
        if s.stop:
            break
        record = end_of_epoch(run, epoch)
        epoch += 1
    run.log.write("end", step=s.step, epoch=epoch)
    env = run.env
    del run
    shutdown(env)
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
