"""The `sweep:` section: parameters (a list = grid values, or a distribution for random search), the metric that
ranks trials, concurrency, and `fuse_top` (fuse the K best trials with a fusion method)."""
from __future__ import annotations

import itertools
import math
import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BeforeValidator, Field, field_validator, model_validator

from tasks.errors import did_you_mean
from tasks.evaluate.names import direction, epoch_metric_names, metric_names
from tasks.registry import FUSION_METHODS, StrictModel

#: keys a trial may not change: what the pipeline is, and the sweep itself
FORBIDDEN_PREFIXES = ("name", "sweep", "runner", "tracking", "schedule", "fusion")
_DOTTED = re.compile(r"^[A-Za-z_][\w-]*(\.([A-Za-z_][\w-]*|\d+))*$")
_METRIC = re.compile(r"^(train|val|test)_(\w+)$")


class Uniform(StrictModel):
    """`{distribution: uniform, low: A, high: B}`: a float drawn uniformly in [A, B)."""

    distribution: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> "Uniform":
        if not self.low < self.high:
            raise ValueError(f"`low` ({self.low}) must be below `high` ({self.high})")
        return self

    def sample(self, rng: Any) -> float:
        return float(rng.uniform(self.low, self.high))


class LogUniform(Uniform):
    """`{distribution: loguniform, low: A, high: B}` (A > 0): log-uniform, for learning rates and weight decays."""

    distribution: Literal["loguniform"]  # type: ignore[assignment]

    @model_validator(mode="after")
    def _positive(self) -> "LogUniform":
        if self.low <= 0:
            raise ValueError(f"a loguniform needs `low` > 0 (got {self.low}); use `uniform` for ranges that include 0")
        return self

    def sample(self, rng: Any) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


class Choice(StrictModel):
    """`{distribution: choice, values: [...]}`: one of the values, each equally likely."""

    distribution: Literal["choice"]
    values: list[Any] = Field(min_length=1)

    def sample(self, rng: Any) -> Any:
        return self.values[int(rng.integers(len(self.values)))]


DISTRIBUTIONS = {"uniform": Uniform, "loguniform": LogUniform, "choice": Choice}


def _normalize_parameter(value: Any) -> Any:
    """A list stays a grid; a mapping must name its distribution; anything else is an error that shows both forms."""
    if isinstance(value, list):
        if not value:
            raise ValueError("a grid parameter needs at least one value")
        return value
    if isinstance(value, dict):
        kind = value.get("distribution")
        if kind is None:
            raise ValueError("a distribution needs `distribution: uniform|loguniform|choice` (e.g. "
                             "{distribution: loguniform, low: 1.0e-4, high: 1.0e-2})")
        if kind not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution '{kind}'{did_you_mean(str(kind), list(DISTRIBUTIONS))} "
                             f"(known: {', '.join(DISTRIBUTIONS)})")
        return DISTRIBUTIONS[kind].model_validate(value)
    raise ValueError("expected a list of values (grid search) or a distribution such as "
                     "{distribution: uniform, low: 0.0, high: 0.5} (random search)")


Parameter = Annotated[Union[list[Any], Uniform, LogUniform, Choice], BeforeValidator(_normalize_parameter)]


def _known_metric_names() -> list[str]:
    return epoch_metric_names() + [f"test_{m}" for m in sorted(metric_names())]


class SweepConfig(StrictModel):
    """Run the pipeline once per trial (nested MLflow runs), rank the trials by `metric`, keep the best."""

    parameters: dict[str, Parameter] = Field(min_length=1, description="dotted key -> grid values or distribution")
    trials: Optional[int] = Field(None, ge=1, le=10_000, description="random search: how many trials to draw")
    metric: str = Field(description="the trial metric that ranks trials, e.g. val_accuracy or val_loss")
    mode: Optional[Literal["max", "min"]] = Field(None, description="default: min for losses and errors, else max")
    max_concurrent: Optional[int] = Field(None, ge=1, description="trials in flight at once (default: runner workers)")
    seed: Optional[int] = Field(None, description="seed of the random search (default: the pipeline's seed)")
    fuse_top: Optional[int] = Field(None, ge=2, description="fuse the K best trials (a fusion method, `fuse_method`)")
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

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        known = _known_metric_names()
        if value not in known:
            raise ValueError(f"unknown trial metric '{value}': name a metric every trial logs: an epoch metric "
                             f"({', '.join(epoch_metric_names())}) or a test metric (test_accuracy, test_f1_macro, test_r2, "
                             f"...){did_you_mean(value, known)}")
        return value

    @model_validator(mode="after")
    def _search(self) -> "SweepConfig":
        random_search = self.is_random
        if random_search and self.trials is None:
            raise ValueError("a random search (a parameter with a `distribution`) needs `trials: N`")
        if not random_search and self.trials is not None:
            raise ValueError(f"`trials` sets the size of a random search; a grid runs every combination "
                             f"({self.grid_size} here): remove `trials`, or give a parameter a distribution")
        if self.fuse_top is not None and self.fuse_top > self.trial_count:
            raise ValueError(f"fuse_top ({self.fuse_top}) is more than the sweep's {self.trial_count} trials")
        return self

    @property
    def is_random(self) -> bool:
        return any(not isinstance(v, list) for v in self.parameters.values())

    @property
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.parameters.values() if isinstance(v, list))

    @property
    def trial_count(self) -> int:
        return self.trials if self.is_random else self.grid_size

    @property
    def resolved_mode(self) -> str:
        if self.mode:
            return self.mode
        return direction(self.metric)

    def assignments(self, seed: int) -> list[dict[str, Any]]:
        """Every trial's values, in order: the grid's combinations (first key varies slowest), or `trials` draws
        (lists act as choices) from a generator seeded with `seed` (`sweep.seed` wins) — reproducible."""
        keys = list(self.parameters)
        if not self.is_random:
            return [dict(zip(keys, combo)) for combo in itertools.product(*(self.parameters[k] for k in keys))]
        import numpy as np

        rng = np.random.default_rng(self.seed if self.seed is not None else seed)
        draws = []
        for _ in range(self.trials or 0):
            draws.append({k: (v[int(rng.integers(len(v)))] if isinstance(v, list) else v.sample(rng))
                          for k, v in self.parameters.items()})
        return draws
