"""Running figures of a scoring run, batch by batch in bounded memory: the prediction distribution, and metrics
against a label column when the rows have one (a confusion count, or sums of errors)."""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import pandas as pd

_NAME = re.compile(r"[^\w\-. /:]")


def metric_name(text: str) -> str:
    """`text` with the characters MLflow refuses in a metric name (parentheses, ...) as `_`."""
    return _NAME.sub("_", text)[:250]


class Tally:
    """Counts predicted classes (or sums predicted values) and, with labels, what scores them."""

    def __init__(self) -> None:
        self.rows = 0
        self.classes: Counter = Counter()
        self.confusion: Counter = Counter()
        self.values = {"n": 0, "sum": 0.0, "sumsq": 0.0, "min": math.inf, "max": -math.inf}
        self.errors = {"n": 0, "abs": 0.0, "sq": 0.0, "y": 0.0, "yy": 0.0}

    def update(self, predictions: "pd.DataFrame", labels: Optional["pd.Series"]) -> None:
        import numpy as np

        self.rows += len(predictions)
        if "label" in predictions.columns:
            predicted = predictions["label"].astype(str).to_numpy()
            self.classes.update(predicted.tolist())
            if labels is not None:
                known = labels.notna().to_numpy()
                self.confusion.update(zip(labels.astype(str).to_numpy()[known].tolist(), predicted[known].tolist()))
        elif "prediction" in predictions.columns:
            values = predictions["prediction"].to_numpy(dtype="float64")
            v = self.values
            v["n"] += len(values)
            v["sum"] += float(values.sum())
            v["sumsq"] += float((values ** 2).sum())
            if len(values):
                v["min"], v["max"] = min(v["min"], float(values.min())), max(v["max"], float(values.max()))
            if labels is not None:
                import pandas as pd

                y = pd.to_numeric(labels, errors="coerce").to_numpy(dtype="float64")
                known = np.isfinite(y)
                e = self.errors
                e["n"] += int(known.sum())
                diff = values[known] - y[known]
                e["abs"] += float(np.abs(diff).sum())
                e["sq"] += float((diff ** 2).sum())
                e["y"] += float(y[known].sum())
                e["yy"] += float((y[known] ** 2).sum())

    def metrics(self) -> dict[str, float]:
        """`rows_scored`, `pred_share.<class>` (or `pred_mean`, `pred_std`, `pred_min`, `pred_max`) and, with
        labels, `scored_accuracy`, `scored_f1_macro` (or `scored_rmse`, `scored_mae`, `scored_r2`)."""
        found: dict[str, float] = {"rows_scored": float(self.rows)}
        total = sum(self.classes.values())
        for name, n in sorted(self.classes.items()):
            found[metric_name(f"pred_share.{name}")] = n / total
        v = self.values
        if v["n"]:
            mean = v["sum"] / v["n"]
            found.update(pred_mean=mean, pred_std=math.sqrt(max(v["sumsq"] / v["n"] - mean ** 2, 0.0)),
                         pred_min=v["min"], pred_max=v["max"])
        if self.confusion:
            n = sum(self.confusion.values())
            found["scored_accuracy"] = sum(c for (t, p), c in self.confusion.items() if t == p) / n
            found["scored_f1_macro"] = _f1_macro(self.confusion)
            found["labelled_rows"] = float(n)
        e = self.errors
        if e["n"]:
            found["scored_rmse"] = math.sqrt(e["sq"] / e["n"])
            found["scored_mae"] = e["abs"] / e["n"]
            variance = e["yy"] - e["y"] ** 2 / e["n"]
            if variance > 0:
                found["scored_r2"] = 1 - e["sq"] / variance
            found["labelled_rows"] = float(e["n"])
        return found

    def distribution(self) -> list[dict[str, Any]]:
        """The predicted classes with their counts and shares (a table for MLflow)."""
        total = sum(self.classes.values()) or 1
        return [{"label": k, "rows": n, "share": round(n / total, 6)} for k, n in self.classes.most_common()]


def _f1_macro(confusion: Counter) -> float:
    labels = {t for t, _ in confusion} | {p for _, p in confusion}
    scores = []
    for label in labels:
        tp = confusion.get((label, label), 0)
        fp = sum(c for (t, p), c in confusion.items() if p == label and t != label)
        fn = sum(c for (t, p), c in confusion.items() if t == label and p != label)
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0
