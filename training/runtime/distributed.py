"""Data-parallel training with ``torch.distributed``: one process per device, launched by ``torchrun``.

``python -m training.world_model ...`` runs as one process. ``torchrun --nproc_per_node N -m
training.world_model ...`` runs N: torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``, and
``init_distributed`` joins the process group (NCCL on GPUs, gloo on CPUs), one device per process
(``cuda:LOCAL_RANK``). Every rank draws the same *global* batch of ``N x batch_size`` dataset positions
and noise from the same seeded streams, keeps its own shard of it, and DDP all-reduces the gradients.
Because of that, N processes with batch ``b`` compute what one process with batch ``N b`` computes
(within float tolerance), and no random stream is bound to a rank: a run saved by N processes resumes
with any other number. Rank 0 alone writes checkpoints, logs, progress bars and reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gym_diamond import resolve_device
from gym_diamond.errors import UserError

__all__ = ["Distributed", "init_distributed", "is_torchrun"]


def is_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher setting ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job. The default is a single process, where every method is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """The rank that writes files and prints."""
        return self.rank == 0

    def shard(self, per_rank: int) -> slice:
        """This rank's rows of a global batch of ``world_size * per_rank`` rows."""
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel (its gradients all-reduced in backward), or as it is alone."""
        if not self.enabled:
            return module
        device = next(module.parameters()).device
        return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)

    def mean(self, values: list[float]) -> list[float]:
        """Each value averaged over the ranks (for logging), one all-reduce."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return (t / self.world_size).tolist()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a picklable Python object: progress counters, not tensors)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank (e.g. until rank 0 has written what the others read next)."""
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (at the end of a torchrun job)."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str | torch.device | None = None) -> tuple[Distributed, torch.device]:
    """Join torchrun's process group if there is one; the process's ``Distributed`` and device.

    Outside torchrun (or with one process) this is ``resolve_device(device)`` and a single-process
    ``Distributed``. Under torchrun each process takes ``cuda:LOCAL_RANK`` when the requested device
    is CUDA (or unset and CUDA exists), else the CPU, and joins with NCCL or gloo accordingly.
    """
    if not is_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Distributed(), resolve_device(device)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    wanted = resolve_device(device)
    if wanted.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                            f"use --nproc_per_node {torch.cuda.device_count()} or fewer")
        wanted = torch.device("cuda", local_rank)
        torch.cuda.set_device(wanted)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if wanted.type == "cuda" else "gloo")
    return Distributed(rank, world_size, local_rank), wanted
