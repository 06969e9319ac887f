"""Preprocess steps for tables: `standardize` (fitted on train only) and regression target scaling.

The fitted statistics are returned as a `FittedScaling`, which the logged model carries so that
predictions on raw inputs are right.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import BaseModel, Field, model_validator

from tasks.registry import PREPROCESSORS, StrictModel

if TYPE_CHECKING:
    from tasks.dataset import TabularSplits


@PREPROCESSORS.register
class StandardizeConfig(StrictModel):
    """Scale each feature to zero mean and unit variance, with statistics from the training split."""

    name: Literal["standardize"] = "standardize"
    with_mean: bool = True
    with_std: bool = True


def normalize_step(value: Any) -> Any:
    """`{standardize: {...}}` or `"standardize"` -> `{"name": "standardize", ...}` for validation."""
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and len(value) == 1 and "name" not in value:
        (name, options), = value.items()
        if options is None:
            options = {}
        if isinstance(options, dict):
            return {"name": name, **options}
    if isinstance(value, BaseModel):
        return value
    raise ValueError("each preprocess step is a mapping with one key, the step's name, e.g. `- standardize: {}`")


@dataclass
class FittedScaling:
    """Feature and target statistics fitted on train; identity where a scaling is off."""

    feature_mean: list[float] = field(default_factory=list)
    feature_scale: list[float] = field(default_factory=list)
    target_mean: float = 0.0
    target_scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"feature_mean": self.feature_mean, "feature_scale": self.feature_scale,
                "target_mean": self.target_mean, "target_scale": self.target_scale}


def fit_preprocess(steps: list[Any], splits: "TabularSplits", target_scaling: str) -> tuple["TabularSplits", FittedScaling]:
    """Fit the steps on train, transform every split; returns the transformed splits and the fitted scaling."""
    import dataclasses

    import numpy as np

    n = splits.num_features
    scaling = FittedScaling(feature_mean=[0.0] * n, feature_scale=[1.0] * n)
    X = dict(splits.X)
    for step in steps:
        if isinstance(step, StandardizeConfig):
            from sklearn.preprocessing import StandardScaler

            scaler = StandardScaler(with_mean=step.with_mean, with_std=step.with_std).fit(X["train"])
            mean = scaler.mean_ if step.with_mean else np.zeros(n)
            scale = scaler.scale_ if step.with_std else np.ones(n)
            scaling.feature_mean = [float(m) for m in mean]
            scaling.feature_scale = [float(s) for s in scale]
            X = {k: scaler.transform(v).astype(np.float32) for k, v in X.items()}
        else:  # pragma: no cover - other steps (e.g. tokenize) belong to other data kinds
            raise TypeError(f"preprocess step '{step.name}' does not apply to tabular data")
    y = dict(splits.y)
    if splits.task == "regression" and target_scaling in ("auto", "standard"):
        mean, std = float(y["train"].mean()), float(y["train"].std()) or 1.0
        scaling.target_mean, scaling.target_scale = mean, std
        y = {k: ((v - mean) / std).astype(np.float32) for k, v in y.items()}
    return dataclasses.replace(splits, X=X, y=y), scaling
