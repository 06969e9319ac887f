"""`sampler: cmaes`: Optuna's CMA-ES for continuous and integer parameters (a list or choice is a config error:
CMA-ES cannot model categories)."""
from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

from pydantic import Field

from tasks.registry import SAMPLERS
from tasks.sweep.samplers.base import SamplerBase


@SAMPLERS.register
class CmaEsSampler(SamplerBase):
    name: Literal["cmaes"]
    numeric_only: ClassVar[bool] = True
    n_startup_trials: int = Field(1, ge=1, description="random trials before the evolution strategy starts")
    sigma0: Optional[float] = Field(None, gt=0, description="initial step size (default: a sixth of each range)")

    @property
    def startup_trials(self) -> int:
        return self.n_startup_trials

    def build(self, seed: int) -> Any:
        from optuna.samplers import CmaEsSampler as Optuna

        return Optuna(n_startup_trials=self.n_startup_trials, sigma0=self.sigma0, seed=seed,
                      warn_independent_sampling=False)
