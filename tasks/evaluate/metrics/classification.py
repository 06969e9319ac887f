"""Classification metrics of class probabilities `proba` (n, classes) against integer labels (scikit-learn)."""
from __future__ import annotations

from typing import Any

from tasks.registry import METRICS


def _predicted(proba: Any) -> Any:
    return proba.argmax(1)


def _averaged(fn_name: str, average: str) -> Any:
    def metric(y_true: Any, proba: Any) -> float:
        from sklearn import metrics as skm

        fn = getattr(skm, fn_name)
        return fn(y_true, _predicted(proba), average=average, labels=list(range(proba.shape[1])), zero_division=0)

    metric.__name__ = f"{fn_name.removesuffix('_score')}_{average}"
    return metric


@METRICS.register("accuracy", task="classification", higher_is_better=True)
def accuracy(y_true: Any, proba: Any) -> float:
    from sklearn import metrics as skm

    return skm.accuracy_score(y_true, _predicted(proba))


for _kind in ("f1", "precision", "recall"):
    for _average in ("macro", "weighted"):
        METRICS.register(f"{_kind}_{_average}", task="classification", higher_is_better=True)(
            _averaged(f"{_kind}_score", _average))


@METRICS.register("log_loss", task="classification", higher_is_better=False)
def log_loss(y_true: Any, proba: Any) -> float:
    import numpy as np
    from sklearn import metrics as skm

    return skm.log_loss(y_true, np.clip(proba, 1e-7, 1), labels=list(range(proba.shape[1])))
