"""Regression metrics of predictions against targets, both in target units (scikit-learn)."""
from __future__ import annotations

from typing import Any

from tasks.registry import METRICS


@METRICS.register("mse", task="regression", higher_is_better=False)
def mse(y_true: Any, y_pred: Any) -> float:
    from sklearn import metrics as skm

    return skm.mean_squared_error(y_true, y_pred)


@METRICS.register("rmse", task="regression", higher_is_better=False)
def rmse(y_true: Any, y_pred: Any) -> float:
    import numpy as np

    return float(np.sqrt(mse(y_true, y_pred)))


@METRICS.register("mae", task="regression", higher_is_better=False)
def mae(y_true: Any, y_pred: Any) -> float:
    from sklearn import metrics as skm

    return skm.mean_absolute_error(y_true, y_pred)


@METRICS.register("r2", task="regression", higher_is_better=True)
def r2(y_true: Any, y_pred: Any) -> float:
    from sklearn import metrics as skm

    return skm.r2_score(y_true, y_pred)
