"""The search space of a sweep: a parameter is a list of values (a grid axis, or a choice for the other samplers)
or a distribution. Each distribution draws values itself (today's random search, reproducible from a seed) and
maps onto Optuna's distribution of the same meaning for the model-based samplers."""
from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BeforeValidator, Field, model_validator

from tasks.errors import did_you_mean
from tasks.registry import StrictModel

#: values Optuna stores as categorical choices as they are; anything else (lists, mappings) goes in as JSON text
_PLAIN = (type(None), bool, int, float, str)


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

    def to_optuna(self) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high)

    def decode(self, value: Any) -> Any:
        return float(value)


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

    def to_optuna(self) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=True)


class IntRange(StrictModel):
    """`{distribution: int, low: A, high: B, step: 1, log: false}`: an integer in [A, B] (both included), on the
    grid A, A+step, ... (or log-spaced with `log: true`, for widths and batch sizes)."""

    distribution: Literal["int"]
    low: int = Field(strict=True)
    high: int = Field(strict=True)
    step: int = Field(1, ge=1, strict=True)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> "IntRange":
        if not self.low < self.high:
            raise ValueError(f"`low` ({self.low}) must be below `high` ({self.high})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("an int distribution with `log: true` needs `low` >= 1 and no `step` (Optuna's rule)")
        if (self.high - self.low) % self.step:
            raise ValueError(f"`high` - `low` ({self.high - self.low}) must be a multiple of `step` ({self.step})")
        return self

    def sample(self, rng: Any) -> int:
        if self.log:
            return int(min(self.high, max(self.low, round(math.exp(rng.uniform(math.log(self.low),
                                                                              math.log(self.high + 1))) - 0.5))))
        return self.low + self.step * int(rng.integers((self.high - self.low) // self.step + 1))

    def to_optuna(self) -> Any:
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def decode(self, value: Any) -> Any:
        return int(value)


class Choice(StrictModel):
    """`{distribution: choice, values: [...]}`: one of the values, each equally likely."""

    distribution: Literal["choice"]
    values: list[Any] = Field(min_length=1)

    def sample(self, rng: Any) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def to_optuna(self) -> Any:
        return categorical(self.values)

    def decode(self, value: Any) -> Any:
        return decode_choice(self.values, value)


DISTRIBUTIONS = {"uniform": Uniform, "loguniform": LogUniform, "int": IntRange, "choice": Choice}


def categorical(values: list[Any]) -> Any:
    """Optuna's categorical distribution over `values`; lists and mappings (`model.hidden: [[64], [128, 64]]`)
    become their JSON text, which Optuna can store and plot."""
    from optuna.distributions import CategoricalDistribution

    return CategoricalDistribution([encode_choice(values, v) for v in values])


def encode_choice(values: list[Any], value: Any) -> Any:
    """`value` (one of `values`) as Optuna stores it."""
    if all(isinstance(v, _PLAIN) for v in values):
        return value
    return json.dumps(value)


def decode_choice(values: list[Any], stored: Any) -> Any:
    """The value of `values` that Optuna stored as `stored`."""
    for value in values:
        if encode_choice(values, value) == stored:
            return value
    raise ValueError(f"{stored!r} is not one of {values!r}")


def to_optuna(parameter: Any) -> Any:
    """The Optuna distribution of a sweep parameter (a list is a categorical choice)."""
    return categorical(parameter) if isinstance(parameter, list) else parameter.to_optuna()


def encode(parameter: Any, value: Any) -> Any:
    """A trial value as Optuna stores it (for `enqueue_trial` of a planned trial)."""
    if isinstance(parameter, list):
        return encode_choice(parameter, value)
    if isinstance(parameter, Choice):
        return encode_choice(parameter.values, value)
    return value


def decode(parameter: Any, stored: Any) -> Any:
    """A value Optuna suggested, as the pipeline takes it."""
    return decode_choice(parameter, stored) if isinstance(parameter, list) else parameter.decode(stored)


def corners(parameter: Any) -> list[Any]:
    """The values that bound what a sampler can draw (ends of a range, every choice): resolving a pipeline with each
    checks the whole range before the search starts."""
    if isinstance(parameter, list):
        return list(parameter)
    if isinstance(parameter, Choice):
        return list(parameter.values)
    return [parameter.decode(parameter.low), parameter.decode(parameter.high)]


def normalize_parameter(value: Any) -> Any:
    """A list stays a list; a mapping must name its distribution; anything else is an error that shows both forms."""
    if isinstance(value, list):
        if not value:
            raise ValueError("a grid parameter needs at least one value")
        return value
    if isinstance(value, dict):
        kind = value.get("distribution")
        if kind is None:
            raise ValueError("a distribution needs `distribution: uniform|loguniform|int|choice` (e.g. "
                             "{distribution: loguniform, low: 1.0e-4, high: 1.0e-2})")
        if kind not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution '{kind}'{did_you_mean(str(kind), list(DISTRIBUTIONS))} "
                             f"(known: {', '.join(DISTRIBUTIONS)})")
        return DISTRIBUTIONS[kind].model_validate(value)
    raise ValueError("expected a list of values (grid search) or a distribution such as "
                     "{distribution: uniform, low: 0.0, high: 0.5} (random search)")


Parameter = Annotated[Union[list[Any], Uniform, LogUniform, IntRange, Choice], BeforeValidator(normalize_parameter)]
