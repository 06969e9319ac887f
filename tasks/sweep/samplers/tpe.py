"""`sampler: tpe` (the default when a parameter has a distribution): Optuna's Tree-structured Parzen Estimator,
multivariate, with the constant-liar strategy so concurrent trials do not all ask for the same point."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.registry import SAMPLERS
from tasks.sweep.samplers.base import SamplerBase


@SAMPLERS.register
class TPESampler(SamplerBase):
    name: Literal["tpe"]
    n_startup_trials: int = Field(8, ge=1, description="random trials before the model is used")
    multivariate: bool = True

    @property
    def startup_trials(self) -> int:
        return self.n_startup_trials

    def build(self, seed: int) -> Any:
        from optuna.samplers import TPESampler as Optuna

        return Optuna(n_startup_trials=self.n_startup_trials, multivariate=self.multivariate, constant_liar=True,
                      seed=seed)
