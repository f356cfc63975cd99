"""Several processes, one run: DistributedDataParallel set up from torchrun's environment.

Launch any training command under ``torchrun`` and each process trains its share of every
global batch; gradients are averaged by DDP, so the run follows the same loss curve as one
process with the same global batch (up to floating-point summation order)::

    torchrun --nproc_per_node=8 $(which scalinglab) train --d-model 768 --layers 12 ...
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --nproc_per_node=8 \\
        $(which scalinglab) train ...

The backend is NCCL on CUDA and gloo on CPU. ``batch_size`` is the global batch and must be a
multiple of the number of processes. Only rank 0 writes observations and checkpoints; on
several nodes ``out_dir`` must be on a filesystem every node sees, so that all ranks resume
from the same checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the run.

    Attributes
    ----------
    rank, world_size, local_rank
        As set by torchrun (0, 1, 0 for a single process).
    owns_group
        This module created the process group and destroys it at the end.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes observations and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def setup(device_type: str) -> DistInfo:
    """Join the process group described by torchrun's variables, if there is one.

    Uses an already initialised default group as is; otherwise initialises one when
    ``WORLD_SIZE`` is greater than 1 (``nccl`` for CUDA devices, ``gloo`` for CPU).
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", 0)), True)


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``values`` over all processes (identity for a single process)."""
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def teardown(info: DistInfo) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()
