"""The trial's side of pruning: an epoch observer (`tasks.train.observers`) that reports the sweep's metric to the
trial in the study after each epoch and stops training when the pruner says so. It runs where the trial trains (a
thread, a Dask or Ray worker) and opens the study from its storage there."""
from __future__ import annotations

import math
from typing import Any, Optional

from tasks.sweep.study import StudyRef
from tasks.train.observers import TrialPruned


class PruningReporter:
    """`reporter(epoch, metrics)`: report `metrics[metric]` at step `epoch` to trial `trial_id`; raise
    `TrialPruned` when the study's pruner prunes it. Picklable (the study is opened on first use)."""

    def __init__(self, ref: StudyRef, trial_id: int, metric: str, pruner: Any, epochs: int) -> None:
        self.ref, self.trial_id, self.metric, self.pruner, self.epochs = ref, trial_id, metric, pruner, epochs
        self._trial: Optional[Any] = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_trial": None}

    def _open(self) -> Any:
        if self._trial is None:
            import optuna

            from tasks.sweep.study import open_storage

            study = optuna.load_study(study_name=self.ref.name, storage=open_storage(self.ref.storage),
                                      pruner=self.pruner.build(self.epochs))
            self._trial = optuna.trial.Trial(study, self.trial_id)
        return self._trial

    def __call__(self, epoch: int, metrics: dict[str, Any]) -> None:
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return
        trial = self._open()
        trial.report(float(value), epoch)
        if trial.should_prune():
            raise TrialPruned(epoch, f"pruned by the {self.pruner.name} pruner after epoch {epoch} "
                                     f"({self.metric}={float(value):.4g})")
