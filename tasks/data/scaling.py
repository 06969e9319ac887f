"""Fit a tabular pipeline's preprocess steps on train and apply them to every split, plus regression target scaling.

The statistics are returned as a `FittedScaling`, which the logged model carries so that predictions on raw
inputs are right.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.data.splits import TabularSplits


@dataclass
class FittedScaling:
    """Feature and target statistics fitted on train; identity where a scaling is off."""

    feature_mean: list[float] = field(default_factory=list)
    feature_scale: list[float] = field(default_factory=list)
    target_mean: float = 0.0
    target_scale: float = 1.0
    scalable: list[bool] = field(default_factory=list)  # per encoded column: may `standardize` rescale it

    def compose(self, mean: Any, scale: Any) -> None:
        """Follow the scaling so far with `(x - mean) / scale` (per feature): the logged model then applies both
        to raw inputs, `((x - m1) / s1 - m2) / s2 = (x - (m1 + m2 * s1)) / (s1 * s2)`."""
        self.feature_mean = [float(m1 + m2 * s1) for m1, m2, s1 in zip(self.feature_mean, mean, self.feature_scale)]
        self.feature_scale = [float(s1 * s2) for s1, s2 in zip(self.feature_scale, scale)]

    def to_dict(self) -> dict[str, Any]:
        return {"feature_mean": self.feature_mean, "feature_scale": self.feature_scale,
                "target_mean": self.target_mean, "target_scale": self.target_scale}


def fit_preprocess(steps: list[Any], splits: "TabularSplits", target_scaling: str) -> tuple["TabularSplits", FittedScaling]:
    """Each step's `apply` in order (fitted on train, applied to every split), then the regression target scaling;
    returns the transformed splits and the fitted scaling."""
    import dataclasses

    import numpy as np

    n = splits.num_features
    scalable = list(splits.layout["scalable"])
    scaling = FittedScaling(feature_mean=[0.0] * n, feature_scale=[1.0] * n, scalable=scalable)
    X = dict(splits.X)
    for step in steps:
        X = step.apply(X, scaling)
    y = dict(splits.y)
    if splits.task == "regression" and target_scaling in ("auto", "standard"):
        mean, std = float(y["train"].mean()), float(y["train"].std()) or 1.0
        scaling.target_mean, scaling.target_scale = mean, std
        y = {k: ((v - mean) / std).astype(np.float32) for k, v in y.items()}
    return dataclasses.replace(splits, X=X, y=y), scaling
