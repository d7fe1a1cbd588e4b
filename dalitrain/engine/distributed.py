"""Process-group setup from torchrun's environment, and the few collectives the engine needs.

One code path for every case: a plain `python -m dalitrain.train` is a world of size 1 (no process group);
under torchrun, gloo on the CPU and NCCL on CUDA. Collectives degrade to identities on one process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from dalitrain.errors import UsageError


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def is_main_process() -> bool:
    """Rank 0, or the only process: who reports what every rank would report alike (a quarantined video of a
    shared manifest, a damaged shared checkpoint). Messages about one rank's own data stay on every rank."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", 0)) == 0


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """data.device: "auto" takes CUDA when present; "gpu" without CUDA is a configuration error."""
    if preference == "gpu" and not torch.cuda.is_available():
        raise UsageError("data.device is 'gpu' but CUDA is not available on this machine (use 'cpu' or 'auto')")
    if preference in ("auto", "gpu") and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast computes in bf16 on `device`: CUDA from sm_80 (Ampere) on. Below it
    torch.cuda.is_bf16_supported() is true by emulation, but cuDNN has no bf16 Conv3d and Triton no bf16 tensor-core
    path there. CPU autocast is never used for training."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def init_distributed(device_preference: str) -> DistContext:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if device.type == "cuda":  # GPU only: bind this process to its GPU before NCCL creates communicators
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # clip shapes are fixed for a run: pick the fastest Conv3d once
    if world_size > 1 and not dist.is_initialized():
        cuda = device.type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world_size,
                                device_id=device if cuda else None)  # NCCL binds its communicator to that GPU
    return DistContext(rank, world_size, local_rank, device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    if not _active():
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / dist.get_world_size()


def all_ranks(flags: torch.Tensor) -> list[bool]:
    """Elementwise over the 1-d bool `flags`: True where the flag is True on every rank. One collective and one
    host read for all of them."""
    flags = flags.to(torch.int32)
    if _active():
        dist.all_reduce(flags, op=dist.ReduceOp.MIN)
    return [bool(f) for f in flags.tolist()]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-element list on one process)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


