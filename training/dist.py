"""Distributed helpers of the reference training (torchvision ``references/classification/utils.py`` style)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from mantis_data.errors import MantisDataError


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


def all_gather_object(env: DistEnv, obj: Any) -> list[Any]:
    """Every rank's ``obj`` (in rank order)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(env: DistEnv, values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over ranks (float64)."""
    t = torch.tensor(values, dtype=torch.float64, device=env.device if env.device.type == "cuda" else "cpu")
    if env.distributed:
        dist.all_reduce(t)
    return t.tolist()


def barrier(env: DistEnv) -> None:
    """Wait for every rank (no-op in one process)."""
    if env.distributed:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    """Leave the process group (after a last barrier)."""
    if env.distributed:
        dist.barrier()
        dist.destroy_process_group()
