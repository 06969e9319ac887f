"""The `sweep:` section: parameters (a list = grid values or choices, or a distribution), the sampler that picks each
trial's values and the pruner that stops hopeless trials (Optuna's), the metric that ranks trials, the budget and
concurrency, the study's storage, and `fuse_top` (fuse the K best trials with a fusion method)."""
from __future__ import annotations

import itertools
import math
import re
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from tasks.errors import did_you_mean
from tasks.evaluate.names import direction, epoch_metric_names
from tasks.registry import FUSION_METHODS, MAX_SEED, PRUNERS, SAMPLERS, StrictModel
from tasks.sweep.space import Choice, Parameter

#: the most trials one sweep may have (a grid's combinations are counted, never listed, to check it)
MAX_TRIALS = 10_000

#: keys a trial may not change: what the pipeline is, and the sweep itself
FORBIDDEN_PREFIXES = ("name", "sweep", "runner", "tracking", "schedule", "fusion")
_DOTTED = re.compile(r"^[A-Za-z_][\w-]*(\.([A-Za-z_][\w-]*|\d+))*$")
_DATABASE_URL = re.compile(r"^(sqlite|postgresql|postgres|mysql|mariadb|oracle|mssql)(\+\w+)?://")


class SweepConfig(StrictModel):
    """Run the pipeline once per trial (nested MLflow runs), rank the trials by `metric`, keep the best."""

    parameters: dict[str, Parameter] = Field(min_length=1, description="dotted key -> grid values or distribution")
    sampler: Optional[SAMPLERS.field_type()] = Field(
        None, description="grid | random | tpe | cmaes | gp (default: grid when every parameter is a list, else tpe)")
    pruner: PRUNERS.field_type() = Field(default_factory=lambda: PRUNERS.get("none")(name="none"),
                                         description="none | median | hyperband | successive_halving")
    trials: Optional[int] = Field(None, ge=1, le=MAX_TRIALS, strict=True,
                                  description="how many trials to run (every sampler but grid)")
    timeout: Optional[float] = Field(None, gt=0, strict=True, description="seconds after which no new trial starts")
    storage: Optional[str] = Field(None, description="the Optuna study's database URL (default: sqlite in .fuseflow/)")
    metric: str = Field(description="the per-epoch metric that ranks trials and feeds the pruner, e.g. val_loss")
    mode: Optional[Literal["max", "min"]] = Field(None, description="default: min for losses and errors, else max")
    max_concurrent: Optional[int] = Field(None, ge=1, strict=True,
                                          description="trials in flight at once (default: runner workers)")
    seed: Optional[int] = Field(None, strict=True, ge=0, le=MAX_SEED, description="seed of the sampler (default: the pipeline's seed)")
    fuse_top: Optional[int] = Field(None, ge=2, strict=True,
                                    description="fuse the K best trials (a fusion method, `fuse_method`)")
    fuse_method: FUSION_METHODS.field_type() = Field(
        default_factory=lambda: FUSION_METHODS.get("weighted")(method="weighted"))

    @field_validator("parameters")
    @classmethod
    def _keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not _DOTTED.match(key):
                raise ValueError(f"parameter {key!r} is not a dotted key like train.optimizer.lr")
            head = key.split(".")[0]
            if head in FORBIDDEN_PREFIXES:
                raise ValueError(f"parameter {key!r}: a trial cannot change `{head}` (sweep keys such as "
                                 "train.optimizer.lr, model.hidden, model.dropout, seed)")
        return value

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _DATABASE_URL.match(value):
            raise ValueError(f"{value!r} is not a database URL: give a SQLAlchemy URL such as "
                             "sqlite:////abs/path/optuna.db or postgresql://user@host/db, or remove `storage` "
                             "(default: sqlite under .fuseflow/)")
        return value

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        known = epoch_metric_names()
        if value.startswith("test_"):
            raise ValueError(f"a sweep cannot rank trials by a test metric ('{value}'): choosing on the test set "
                             "makes its score an optimistic estimate of the chosen model; rank by "
                             f"'val_{value[5:]}' (the validation split) instead")
        if value not in known:
            raise ValueError(f"unknown trial metric '{value}': name a metric every trial logs per epoch "
                             f"({', '.join(known)}){did_you_mean(value, known)}")
        return value

    @model_validator(mode="after")
    def _search(self) -> "SweepConfig":
        sampler = self.resolved_sampler
        distributions = [k for k, v in self.parameters.items() if not isinstance(v, list)]
        if sampler.name == "grid":
            if distributions:
                raise ValueError(f"a grid runs every combination of lists, but {', '.join(distributions)} "
                                 "has a distribution: give it a list of values, or set `sampler: tpe` (or random)")
            if self.trials is not None:
                raise ValueError(f"`trials` sets the budget of a search; a grid runs every combination "
                                 f"({self.grid_size} here): remove `trials`, or set `sampler: tpe` (or random)")
            if self.grid_size > MAX_TRIALS:
                raise ValueError(f"the grid has {self.grid_size} combinations, more than the limit of {MAX_TRIALS} "
                                 "trials: shorten the lists, or search with `sampler: tpe` and `trials: N`")
            if self.pruner.prunes:
                raise ValueError(f"a grid compares every combination to its last epoch; `pruner: {self.pruner.name}` "
                                 "would leave holes in it: search with `sampler: tpe` (or random) to prune, or "
                                 "remove `pruner`")
        elif self.trials is None:
            raise ValueError(f"a {sampler.name} search needs its budget, `trials: N`")
        if sampler.numeric_only:
            categories = [k for k, v in self.parameters.items() if isinstance(v, (list, Choice))]
            if categories:
                raise ValueError(f"`sampler: {sampler.name}` models numeric ranges only, but {', '.join(categories)} "
                                 "is a list of choices: use `sampler: tpe`, or an `int`/`uniform` distribution")
        if self.fuse_top is not None and self.fuse_top > self.trial_count:
            raise ValueError(f"fuse_top ({self.fuse_top}) is more than the sweep's {self.trial_count} trials")
        return self

    @property
    def resolved_sampler(self) -> Any:
        """The sampler config: as set, else grid when every parameter is a list, else tpe."""
        if self.sampler is not None:
            return self.sampler
        name = "tpe" if self.is_random else "grid"
        return SAMPLERS.get(name)(name=name)

    @property
    def is_random(self) -> bool:
        return any(not isinstance(v, list) for v in self.parameters.values())

    @property
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.parameters.values() if isinstance(v, list))

    @property
    def trial_count(self) -> int:
        return self.grid_size if self.resolved_sampler.name == "grid" else (self.trials or 0)

    @property
    def resolved_mode(self) -> str:
        if self.mode:
            return self.mode
        return direction(self.metric)

    def sampler_seed(self, seed: int) -> int:
        return self.seed if self.seed is not None else seed

    def assignments(self, seed: int, count: Optional[int] = None) -> list[dict[str, Any]]:
        """The planned trials' values, in order: a grid's combinations (first key varies slowest), or `count`
        (default `trials`) random draws (lists act as choices) from a generator seeded with `seed` (`sweep.seed`
        wins): reproducible, and the same trials as the hand-written search before Optuna."""
        keys = list(self.parameters)
        if self.resolved_sampler.name == "grid":
            return [dict(zip(keys, combo)) for combo in itertools.product(*(self.parameters[k] for k in keys))]
        import numpy as np

        rng = np.random.default_rng(self.sampler_seed(seed))
        draws = []
        for _ in range(self.trials or 0 if count is None else count):
            draws.append({k: (v[int(rng.integers(len(v)))] if isinstance(v, list) else v.sample(rng))
                          for k, v in self.parameters.items()})
        return draws
