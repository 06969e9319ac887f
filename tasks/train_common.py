"""Training options shared by every backend (optimizer, scheduler, early stopping)."""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from typing import Iterator, Literal, Optional

from pydantic import Field, PositiveInt

from tasks.registry import StrictModel


class OptimizerConfig(StrictModel):
    name: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd only")
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)


class SchedulerConfig(StrictModel):
    name: Literal["none", "linear", "cosine"] = "none"
    warmup_steps: int = Field(0, ge=0, description="optimizer steps of linear warm-up from 0 to lr")


class EarlyStoppingConfig(StrictModel):
    """Stop when `monitor` has not improved for `patience` epochs, and restore the best weights."""

    monitor: str = "val_loss"
    patience: PositiveInt = 5
    mode: Literal["auto", "min", "max"] = "auto"
    min_delta: float = Field(0.0, ge=0)
    restore_best: bool = True

    @property
    def resolved_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        return "min" if any(w in self.monitor for w in ("loss", "mse", "mae", "rmse")) else "max"


class TrainBase(StrictModel):
    """Keys every backend understands."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    eval_batch_size: Optional[PositiveInt] = None
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    early_stopping: Optional[EarlyStoppingConfig] = None
    grad_clip: Optional[float] = Field(None, gt=0, description="max gradient norm")
    device: Literal["auto", "cpu", "cuda"] = "auto"


def lr_lambda(name: str, warmup_steps: int, total_steps: int):
    """Multiplier of the base lr at each optimizer step: warm-up, then constant/linear/cosine decay to 0."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if name == "none":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if name == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def resolve_device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available; use device: auto")
    return choice


_SEEDED_INIT_LOCK = threading.Lock()


@contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Seed torch's global generator and hold a process-wide lock while a model is built, so models built at the
    same time in several threads (fusion members) each get exactly the initialisation their seed gives."""
    import torch

    with _SEEDED_INIT_LOCK:
        torch.manual_seed(seed)
        yield
