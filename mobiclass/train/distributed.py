"""PyTorch's distributed engine for training: `torchrun --nproc-per-node N -m mobiclass train ...`.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; each process then trains on its share of every epoch
(DistributedSampler) through DistributedDataParallel, gloo on CPU and NCCL on GPU. Without those
variables everything here is a no-op, so one code path serves both.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from ..errors import UsageError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        """The device of this process: its own GPU under torchrun, else what the config asks."""
        if requested == "auto":
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError(f"device {requested} was asked for, but this PyTorch build sees no CUDA GPU",
                             code="no_cuda")
        if requested == "cuda" and self.enabled:
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device(requested)

    def broadcast(self, value):
        """Rank 0's `value` on every rank."""
        if not self.enabled:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def gather(self, value) -> list:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def sum(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return values
        return [float(np.sum(column)) for column in zip(*self.gather(values))]


def init_distributed(device: str) -> Distributed:
    """Join the process group torchrun describes (once per process); a single process gets the no-op."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    if not dist.is_initialized():
        gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        # Other ranks wait while rank 0 computes the head stage's features: allow for a large first extraction.
        dist.init_process_group("nccl" if gpu else "gloo", timeout=timedelta(hours=4))
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown(info: Distributed, finished: bool) -> None:
    """Leave the group. A process that finished waits for the others first: destroying the group is collective,
    and a rank that left while rank 0 still wrote the run's report could abort (gloo's threads torn down under it).
    After an error no one waits, so a failing rank cannot hang its peers."""
    if info.enabled and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()
