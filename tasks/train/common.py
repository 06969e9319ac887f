"""What every training backend shares: the options (optimizer, scheduler, early stopping), the result, the
per-epoch validation metrics, the epoch callback and a seeded model initialisation."""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Literal, Optional

from pydantic import Field, PositiveInt

from tasks.evaluate.names import direction
from tasks.registry import LOSSES, StrictModel


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
        return direction(self.monitor)


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

    #: the data a backend trains models on (checked against the pipeline's data before anything runs)
    modalities: ClassVar[frozenset[str]] = frozenset()

    def trainer(self) -> Any:
        """The object that trains with this config (`fit_tabular`, `fit_text`): each backend returns its own."""
        raise NotImplementedError


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    stopped_early: bool = False
    train_samples_per_s: float = 0.0
    run_id: Optional[str] = None  # the MLflow run that trained it (a run reading the cached result is another one)


EpochCallback = Callable[[int, dict[str, float], dict[str, Any]], None]


def epoch_metrics(outputs: Any, targets: Any, task: str) -> dict[str, float]:
    """Cheap per-epoch validation metrics (same names as the final evaluation)."""
    import torch

    if task == "classification":
        pred = outputs.argmax(-1)
        accuracy = (pred == targets).float().mean().item()
        n = outputs.shape[-1]
        f1s = []
        for c in range(n):
            tp = ((pred == c) & (targets == c)).sum().item()
            fp = ((pred == c) & (targets != c)).sum().item()
            fn = ((pred != c) & (targets == c)).sum().item()
            f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
        return {"accuracy": accuracy, "f1_macro": sum(f1s) / n}
    out = outputs.squeeze(-1)
    resid = ((out - targets) ** 2).sum().item()
    total = ((targets - targets.mean()) ** 2).sum().item() or 1.0
    return {"r2": 1 - resid / total, "mae": torch.abs(out - targets).mean().item()}


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


def loss_function(name: str, task: str) -> Callable[[Any, Any], Any]:
    """The registered loss `name` for `task`; an error that names the losses that fit when it does not."""
    entry = LOSSES.get(name)
    if task not in entry.info.get("tasks", ()):
        fitting = [n for n in LOSSES.names() if task in LOSSES.get(n).info.get("tasks", ())]
        raise ValueError(f"loss '{name}' does not fit a {task} target; use loss: {' or '.join(fitting)}")
    return entry.fn(task)
