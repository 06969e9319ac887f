"""Preprocess step `standardize` for tables: zero mean and unit variance per feature, fitted on train only.

The fitted statistics go into the run's `FittedScaling` (tasks/data/scaling.py), which the logged model carries so
that predictions on raw inputs are right.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from tasks.registry import PREPROCESSORS, StrictModel

if TYPE_CHECKING:
    from tasks.data.scaling import FittedScaling


@PREPROCESSORS.register
class StandardizeConfig(StrictModel):
    """Scale each feature to zero mean and unit variance, with statistics from the training split."""

    name: Literal["standardize"] = "standardize"
    with_mean: bool = True
    with_std: bool = True

    modalities: ClassVar[frozenset[str]] = frozenset({"tabular"})

    def apply(self, X: dict[str, Any], scaling: "FittedScaling") -> dict[str, Any]:
        """Fit on `X["train"]`, transform every split; `scaling` is composed with it (after the steps before).
        Only the number columns are rescaled: one-hot, 0/1 and embedding-code columns keep their values."""
        import numpy as np
        from sklearn.preprocessing import StandardScaler

        n = X["train"].shape[1]
        scaler = StandardScaler(with_mean=self.with_mean, with_std=self.with_std).fit(X["train"])
        mean = scaler.mean_ if self.with_mean else np.zeros(n)
        scale = scaler.scale_ if self.with_std else np.ones(n)
        fixed = ~np.asarray(scaling.scalable, dtype=bool)
        if fixed.any():
            mean, scale = np.where(fixed, 0.0, mean), np.where(fixed, 1.0, scale)
            scaler.mean_, scaler.scale_ = mean, scale
        scaling.compose(mean, scale)
        return {k: scaler.transform(v).astype(np.float32) for k, v in X.items()}
