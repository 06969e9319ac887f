"""Evaluate step: test metrics (scikit-learn), per-class report, confusion-matrix and learning-curve plots."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pydantic import Field, field_validator

from tasks.errors import did_you_mean
from tasks.registry import StrictModel

CLASSIFICATION_METRICS = ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "precision_weighted",
                          "recall_macro", "recall_weighted", "log_loss")
REGRESSION_METRICS = ("mse", "rmse", "mae", "r2")


class EvaluateConfig(StrictModel):
    """Which test metrics to log (default: all that fit the task) and which plots to draw."""

    metrics: Optional[list[str]] = Field(None, min_length=1)
    confusion_matrix: bool = True
    learning_curve: bool = True

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        known = CLASSIFICATION_METRICS + REGRESSION_METRICS
        for name in value or []:
            if name not in known:
                raise ValueError(f"unknown metric '{name}'{did_you_mean(name, known)} (known: {', '.join(known)})")
        return value

    def for_task(self, task: str) -> list[str]:
        allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
        if self.metrics is None:
            return list(allowed)
        return [m for m in self.metrics if m in allowed]


def classification_metrics(y_true: Any, proba: Any, names: list[str]) -> dict[str, float]:
    """Metrics of class probabilities ``proba`` (n, classes) against integer labels."""
    import numpy as np
    from sklearn import metrics as skm

    pred = proba.argmax(1)
    labels = list(range(proba.shape[1]))
    out: dict[str, float] = {}
    for name in names:
        if name == "accuracy":
            out[name] = skm.accuracy_score(y_true, pred)
        elif name == "log_loss":
            out[name] = skm.log_loss(y_true, np.clip(proba, 1e-7, 1), labels=labels)
        else:
            kind, average = name.split("_")
            fn = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[kind]
            out[name] = fn(y_true, pred, average=average, labels=labels, zero_division=0)
    return {k: float(v) for k, v in out.items()}


def regression_metrics(y_true: Any, y_pred: Any, names: list[str]) -> dict[str, float]:
    import numpy as np
    from sklearn import metrics as skm

    fns = {"mse": skm.mean_squared_error, "mae": skm.mean_absolute_error, "r2": skm.r2_score,
           "rmse": lambda a, b: float(np.sqrt(skm.mean_squared_error(a, b)))}
    return {name: float(fns[name](y_true, y_pred)) for name in names}


def classification_report(y_true: Any, proba: Any, class_names: list[str]) -> dict[str, Any]:
    """Per-class precision/recall/F1/support and the confusion matrix, JSON-ready."""
    from sklearn import metrics as skm

    pred = proba.argmax(1)
    labels = list(range(len(class_names)))
    report = skm.classification_report(y_true, pred, labels=labels, target_names=[str(c) for c in class_names],
                                       output_dict=True, zero_division=0)
    return {"per_class": report, "confusion_matrix": skm.confusion_matrix(y_true, pred, labels=labels).tolist(),
            "class_names": [str(c) for c in class_names]}


def plot_confusion_matrix(matrix: list[list[int]], class_names: list[str], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(matrix)
    n = len(class_names)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title or "confusion matrix (test)")
    ax.set_xticklabels(class_names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticklabels(class_names)
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > threshold else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_learning_curve(history: list[dict[str, float]], path: Path, best_epoch: int | None = None) -> Path:
    """Loss curves on the left, validation metrics on the right, the restored epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train_loss", "val_loss"):
        if history and key in history[0]:
            left.plot(epochs, [h[key] for h in history], marker="o", markersize=3, label=key)
    left.set(xlabel="epoch", ylabel="loss", title="loss")
    others = [k for k in (history[0] if history else {}) if k.startswith("val_") and k != "val_loss"]
    for key in others:
        right.plot(epochs, [h[key] for h in history], marker="o", markersize=3, label=key)
    right.set(xlabel="epoch", title="validation metrics")
    for ax in (left, right):
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch {best_epoch}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def record_evaluation(report: dict[str, Any], metrics: dict[str, float], train_result: Any, config: EvaluateConfig,
                      logger: Any) -> dict[str, Any]:
    """Add the prefixed test metrics and training summary to `report`; log metrics, report JSON and plots."""
    import tempfile

    from tasks.dataset import METRIC_PREFIX
    from tasks.tracking import write_json

    prefixed = {f"{METRIC_PREFIX['test']}_{k}": v for k, v in metrics.items()}
    report["metrics"] = prefixed
    if train_result is not None:
        report["training"] = {"best_epoch": train_result.best_epoch, "epochs_run": train_result.epochs_run,
                              "stopped_early": train_result.stopped_early,
                              "train_samples_per_s": train_result.train_samples_per_s}
    if logger:
        logger.log_metrics(prefixed, step=train_result.epochs_run if train_result else 0)
        with tempfile.TemporaryDirectory(prefix="fuseflow-eval-") as tmp:
            folder = Path(tmp)
            write_json(folder / "evaluation_report.json", report)
            if "confusion_matrix" in report and config.confusion_matrix:
                plot_confusion_matrix(report["confusion_matrix"], report["class_names"], folder / "confusion_matrix.png")
            if train_result is not None and train_result.history and config.learning_curve:
                plot_learning_curve(train_result.history, folder / "learning_curve.png", train_result.best_epoch)
            logger.log_artifacts(folder, "evaluation")
    return report
