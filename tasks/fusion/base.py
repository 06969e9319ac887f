"""What every fusion method shares: the combination it produces, scoring on validation, numerically safe softmax.

Output-level methods (`mean`, `weighted`, `greedy`) turn member logits (members x samples x classes) into a
`Combination`; weight-level methods (`soup_uniform`, `soup_greedy`) average member weights into one network.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Sequence

import numpy as np

from tasks.registry import StrictModel

Score = tuple[float, float]  # (accuracy, -log loss): compared lexicographically, higher is better


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def nll(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample negative log-likelihood of the true class (probabilities clipped at 1e-7)."""
    return -np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0))


def score(probs: np.ndarray, y: np.ndarray) -> Score:
    """Accuracy first, log loss as the tie-break: the order used to pick the best member and to judge a gain."""
    return float((probs.argmax(1) == y).mean()), -float(nll(probs, y).mean())


@dataclass
class Combination:
    """How member outputs become one prediction: weights over members, applied to logits or to probabilities.

    `weights` has shape (members,) or (members, classes) (per-class weights); each column sums to 1.
    """

    space: Literal["logits", "probs"]
    weights: np.ndarray
    temperature: float = 1.0
    details: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(members, samples, classes) logits -> (samples, classes) fused probabilities."""
        w = self.weights[:, None, None] if self.weights.ndim == 1 else self.weights[:, None, :]
        if self.space == "logits":
            return softmax((w * logits).sum(0) / self.temperature)
        return (w * softmax(logits)).sum(0)

    def member_weights(self) -> np.ndarray:
        """One weight per member (the mean over classes for per-class weights)."""
        return self.weights if self.weights.ndim == 1 else self.weights.mean(1)

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "weights": self.weights.tolist(), "temperature": self.temperature,
                "details": self.details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Combination":
        return cls(data["space"], np.asarray(data["weights"], dtype=np.float64), float(data.get("temperature", 1.0)),
                   dict(data.get("details") or {}))


class OutputMethod(StrictModel):
    """A method that combines member outputs; `fit` sees validation logits and labels only."""

    level: ClassVar[str] = "output"

    def fit(self, logits: np.ndarray, y: np.ndarray) -> Combination:
        raise NotImplementedError


@dataclass
class SoupResult:
    """The averaged weights, which members went in (weights over members) and the validation trace."""

    state: dict[str, Any]
    weights: np.ndarray
    trace: list[dict[str, Any]] = field(default_factory=list)


class SoupMismatch(ValueError):
    """Member weights that cannot be averaged (different parameter names or shapes); names the parameter."""

    def __init__(self, message: str, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def check_same_shapes(states: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
    """Raise SoupMismatch naming the first parameter where a member differs from the first member."""
    ref = states[0]
    for state, name in zip(states[1:], names[1:]):
        for key in list(ref) + [k for k in state if k not in ref]:
            if key not in state:
                raise SoupMismatch(f"cannot average weights: {name} has no parameter '{key}' ({names[0]} has it); "
                                   "soups need members of one architecture", key)
            if key not in ref:
                raise SoupMismatch(f"cannot average weights: {name} has an extra parameter '{key}'; "
                                   "soups need members of one architecture", key)
            if tuple(state[key].shape) != tuple(ref[key].shape):
                raise SoupMismatch(f"cannot average weights: parameter '{key}' has shape {list(state[key].shape)} in "
                                   f"{name} but {list(ref[key].shape)} in {names[0]}; soups need members of one "
                                   "architecture", key)


def average_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Uniform average of state dicts (floating tensors averaged; integer buffers taken from the first)."""
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = sum(s[key].double() for s in states).div(len(states)).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


class WeightMethod(StrictModel):
    """A method that averages member weights (one architecture, one initialisation)."""

    level: ClassVar[str] = "weights"

    def fit_soup(self, states: list[dict[str, Any]], names: list[str],
                 evaluate: Callable[[dict[str, Any]], Score]) -> SoupResult:
        raise NotImplementedError
