"""`sampler: gp`: Optuna's Gaussian-process Bayesian optimisation (good for small budgets of expensive trials)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.registry import SAMPLERS
from tasks.sweep.samplers.base import SamplerBase


@SAMPLERS.register
class GPSampler(SamplerBase):
    name: Literal["gp"]
    n_startup_trials: int = Field(8, ge=1, description="random trials before the Gaussian process is fitted")

    @property
    def startup_trials(self) -> int:
        return self.n_startup_trials

    def build(self, seed: int) -> Any:
        from optuna.samplers import GPSampler as Optuna

        return Optuna(n_startup_trials=self.n_startup_trials, seed=seed)
