"""What every sweep pruner is: a config that builds an Optuna pruner from the epochs a trial trains."""
from __future__ import annotations

from typing import Any

from tasks.registry import StrictModel


class PrunerBase(StrictModel):
    name: str

    @property
    def prunes(self) -> bool:
        """Whether trials report per-epoch values to the study at all (`none` does not)."""
        return True

    def build(self, epochs: int) -> Any:
        """The Optuna pruner; `epochs` is a trial's `train.epochs` (the most a trial reports)."""
        raise NotImplementedError
