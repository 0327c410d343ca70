"""Multi-process training under torchrun: ranks, devices, process group and global sums."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Topology:
    """Where this process sits: its rank among world_size processes and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints and logs."""
        return self.rank == 0


def resolve_device(preference: str, local_rank: int = 0, setting: str = "train.device") -> torch.device:
    """'auto' -> this process's GPU when there is one, else the CPU; 'cpu'/'cuda' as asked. Errors name `setting`."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{setting}: 'cuda' asked for but torch sees no GPU")
        return torch.device("cuda", local_rank)
    if preference != "cpu":
        raise ValueError(f"{setting}: {preference!r}; choose auto, cpu or cuda")
    return torch.device("cpu")


def init_distributed(device_preference: str) -> Topology:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK and join the process group (nccl on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # The other ranks wait at a barrier while rank 0 builds the feature cache, which on Flickr takes longer than
        # the default 10-minute timeout after which the NCCL watchdog would kill the job.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=1))
    return Topology(rank, world_size, device)


def global_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes (a no-op in a single process); the result is on the tensor's device."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        # nccl reduces CUDA tensors only, so small CPU tensors (counts, logged losses) travel through this GPU.
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else values.device
        summed = values.to(device, copy=True)
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed.to(values.device)
    return values


def barrier() -> None:
    """Wait for every process (a no-op in a single process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
