"""`pruner: median`: stop a trial whose best metric so far is worse than the median of earlier trials at the same
epoch (Optuna's MedianPruner), once `startup_trials` trials finished and after `warmup_epochs` epochs."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.registry import PRUNERS
from tasks.sweep.pruners.base import PrunerBase


@PRUNERS.register
class MedianPruner(PrunerBase):
    name: Literal["median"]
    startup_trials: int = Field(4, ge=0, description="trials that finish unpruned before any is pruned")
    warmup_epochs: int = Field(2, ge=0, description="epochs of each trial before it can be pruned")
    interval_epochs: int = Field(1, ge=1, description="check every this many epochs")

    def build(self, epochs: int) -> Any:
        from optuna.pruners import MedianPruner as Optuna

        # step = epoch (1-based, as in MLflow); Optuna prunes from step n_warmup_steps on
        return Optuna(n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_epochs + 1,
                      interval_steps=self.interval_epochs)
