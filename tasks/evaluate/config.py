"""The `evaluate:` section: which test metrics to log (default: all that fit the task) and which plots to draw."""
from __future__ import annotations

from typing import Optional

from pydantic import Field, field_validator

from tasks.errors import did_you_mean
from tasks.evaluate.names import metric_names
from tasks.registry import StrictModel


class EvaluateConfig(StrictModel):
    """Which test metrics to log (default: all that fit the task) and which plots to draw."""

    metrics: Optional[list[str]] = Field(None, min_length=1)
    confusion_matrix: bool = True
    learning_curve: bool = True

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        known = metric_names()
        for name in value or []:
            if name not in known:
                raise ValueError(f"unknown metric '{name}'{did_you_mean(name, known)} (known: {', '.join(known)})")
        return value

    def for_task(self, task: str) -> list[str]:
        allowed = metric_names(task)
        if self.metrics is None:
            return list(allowed)
        return [m for m in self.metrics if m in allowed]
