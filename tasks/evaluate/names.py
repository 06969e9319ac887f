"""Metric names in one place: `<split>_<metric>` prefixes, the metrics of each task, which direction is better,
and what the training backends log every epoch."""
from __future__ import annotations

from typing import Literal

from tasks.registry import METRICS

Task = Literal["classification", "regression"]

#: metric-name prefix of each split: `train_loss`, `val_accuracy`, `test_f1_macro`
SPLIT_PREFIX = {"train": "train", "validation": "val", "test": "test"}

#: what every backend logs each epoch, by task (tasks.train.backends.torch_loop.epoch_metrics, the hf_trainer callback)
EPOCH_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("train_loss", "val_loss", "val_accuracy", "val_f1_macro"),
    "regression": ("train_loss", "val_loss", "val_r2", "val_mae"),
}

#: names that are losses or errors (lower is better) without being a registered metric
_LOSSES = ("loss",)


def metric_names(task: str | None = None) -> list[str]:
    """Registered metric names (of one task, or all), in registration order."""
    return METRICS.names(task=task) if task else METRICS.names()


def epoch_metric_names(task: str | None = None) -> list[str]:
    """What the backends log each epoch (one task's, or every task's)."""
    tasks = [task] if task else list(EPOCH_METRICS)
    return list(dict.fromkeys(name for t in tasks for name in EPOCH_METRICS[t]))


def base_name(name: str) -> str:
    """`val_f1_macro` -> `f1_macro`: the metric without its split prefix."""
    for prefix in SPLIT_PREFIX.values():
        if name.startswith(f"{prefix}_"):
            return name[len(prefix) + 1:]
    return name


def lower_is_better(name: str) -> bool:
    """Whether smaller values of metric `name` (with or without a split prefix) are better: losses and errors."""
    base = base_name(name)
    if base in _LOSSES:
        return True
    if base in METRICS:
        return not METRICS.get(base).info.get("higher_is_better", True)
    return any(base.endswith(word) for word in ("loss", "error", "mse", "mae", "rmse"))


def direction(name: str) -> Literal["min", "max"]:
    """`min` for losses and errors, else `max`."""
    return "min" if lower_is_better(name) else "max"


def task_of_metrics(names: list[str]) -> Task:
    """classification or regression, told by (test) metric names."""
    bases = {base_name(n) for n in names}
    return "classification" if bases & set(metric_names("classification")) else "regression"
