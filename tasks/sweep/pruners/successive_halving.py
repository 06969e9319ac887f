"""`pruner: successive_halving`: Optuna's asynchronous successive halving, with epochs as the resource: at epoch
min_epochs * reduction_factor^k a trial goes on only if it is in the top 1/reduction_factor of the trials there."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.registry import PRUNERS
from tasks.sweep.pruners.base import PrunerBase


@PRUNERS.register
class SuccessiveHalvingPruner(PrunerBase):
    name: Literal["successive_halving"]
    min_epochs: int = Field(1, ge=1, description="epochs every trial trains before the first rung")
    reduction_factor: int = Field(4, ge=2, description="keep 1 of this many trials at each rung")
    min_early_stopping_rate: int = Field(0, ge=0)

    def build(self, epochs: int) -> Any:
        from optuna.pruners import SuccessiveHalvingPruner as Optuna

        return Optuna(min_resource=self.min_epochs, reduction_factor=self.reduction_factor,
                      min_early_stopping_rate=self.min_early_stopping_rate)
