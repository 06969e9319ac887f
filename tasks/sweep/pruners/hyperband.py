"""`pruner: hyperband`: Optuna's Hyperband (several successive-halving brackets), with epochs as the resource; its
maximum is the trials' `train.epochs` unless `max_epochs` says otherwise."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field

from tasks.registry import PRUNERS
from tasks.sweep.pruners.base import PrunerBase


@PRUNERS.register
class HyperbandPruner(PrunerBase):
    name: Literal["hyperband"]
    min_epochs: int = Field(1, ge=1, description="epochs every trial trains before it can be pruned")
    max_epochs: Optional[int] = Field(None, ge=1, description="default: the trials' train.epochs")
    reduction_factor: int = Field(3, ge=2, description="keep 1 of this many trials at each rung")

    def build(self, epochs: int) -> Any:
        from optuna.pruners import HyperbandPruner as Optuna

        return Optuna(min_resource=self.min_epochs, max_resource=self.max_epochs or epochs,
                      reduction_factor=self.reduction_factor)
