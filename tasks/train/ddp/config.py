"""`train.distributed: {nproc_per_node: N, backend: gloo|nccl}`: DDP in N processes on this machine (torchrun)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import field_validator

from tasks.registry import StrictModel


class DistributedConfig(StrictModel):
    """DDP in `nproc_per_node` processes on this machine; `backend` None: nccl with CUDA GPUs, else gloo."""

    nproc_per_node: int
    backend: Optional[Literal["gloo", "nccl"]] = None

    @field_validator("nproc_per_node")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"nproc_per_node must be at least 1 (the number of training processes on this "
                             f"machine), got {value}; with a GPU per process use the number of GPUs")
        return value


def fits_device(distributed: Optional[DistributedConfig], device: str) -> None:
    """The config check of every backend with `distributed`: nccl cannot train on `device: cpu`."""
    if distributed and distributed.backend == "nccl" and device == "cpu":
        raise ValueError("distributed.backend 'nccl' needs CUDA GPUs but train.device is 'cpu': use "
                         "distributed.backend: gloo (or leave it out) to train on CPUs")
