"""What every sweep sampler is: a config that builds an Optuna sampler. Planned samplers (grid, random) fix every
trial's values up front (fuseflow's own draws, reproducible from the seed, enqueued into the study); model-based
ones ask Optuna for each trial, the first `startup_trials` being the planned random draws."""
from __future__ import annotations

from typing import Any, ClassVar

from tasks.registry import StrictModel


class SamplerBase(StrictModel):
    name: str

    #: every trial's values are known before the sweep starts (grid, random)
    planned: ClassVar[bool] = False
    #: the sampler models only numeric parameters (a list or choice is an error, not a silent fallback)
    numeric_only: ClassVar[bool] = False

    @property
    def startup_trials(self) -> int:
        """How many random trials open the search before the model is used (planned random draws)."""
        return 0

    def build(self, seed: int) -> Any:
        """The Optuna sampler (trials enqueued by fuseflow bypass it; it samples the rest)."""
        from optuna.samplers import RandomSampler

        return RandomSampler(seed=seed)
