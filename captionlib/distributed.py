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
        if local_rank >= torch.cuda.device_count():  # torchrun started more processes than there are GPUs
            raise ValueError(
                f"{setting}: process {local_rank} has no GPU of its own (torch sees {torch.cuda.device_count()}); "
                f"start one process per GPU (--nproc_per_node) or choose cpu for {setting}"
            )
        return torch.device("cuda", local_rank)
    if preference != "cpu":
        raise ValueError(f"{setting}: {preference!r}; choose auto, cpu or cuda")
    return torch.device("cpu")


def init_distributed(device_preference: str, setting: str = "train.device") -> Topology:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK and join the process group (nccl on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank, setting)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # The other ranks wait at a barrier while rank 0 builds the feature cache, which on Flickr takes longer than
        # the default 10-minute timeout after which the NCCL watchdog would kill the job.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=1))
    return Topology(rank, world_size, device)


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, the number of processes): (0, 1) outside torchrun."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _collective_device(values: torch.Tensor) -> torch.device:
    """Where a collective can take the tensor: nccl moves CUDA tensors only, so CPU ones travel through this GPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else values.device


def global_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes (a no-op in a single process); the result is on the tensor's device."""
    if rank_and_world()[1] > 1:
        summed = values.to(_collective_device(values), copy=True)
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed.to(values.device)
    return values


def gather_round_robin(shard: torch.Tensor, total: int) -> torch.Tensor:
    """All `total` rows, in order, on every process, from shards dealt round robin: rank r holds rows r, r+W, r+2W, ...

    shard is (n_r, ...), with the same trailing sizes on every process; a single process gets it back as it is.
    """
    rank, world = rank_and_world()
    if world == 1:
        return shard
    per_rank = -(-total // world)  # ceil(total / W): rank 0 holds this many, later ranks as many or one fewer
    padded = shard.new_zeros(per_rank, *shard.shape[1:]).to(_collective_device(shard))  # (per_rank, ...)
    padded[: len(shard)] = shard
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)  # W x (per_rank, ...)
    rows = torch.stack(gathered, 1).flatten(0, 1)  # (per_rank * W, ...): row j*W + r is rank r's j-th
    return rows[:total].to(shard.device)  # the padding rows all land at positions >= total


def leave_group() -> bool:
    """Leave torchrun's process group, if this process joined one; True when it is the one that reports (rank 0)."""
    rank, _ = rank_and_world()
    if dist.is_initialized():
        dist.destroy_process_group()
    return rank == 0


def barrier() -> None:
    """Wait for every process (a no-op in a single process)."""
    if rank_and_world()[1] > 1:
        dist.barrier()
