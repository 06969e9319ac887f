"""Evaluate step: test metrics (registered in `tasks.registry.METRICS`), per-class report, confusion-matrix and
learning-curve plots."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.evaluate.config import EvaluateConfig
from tasks.evaluate.names import SPLIT_PREFIX
from tasks.plots import pyplot, save_figure
from tasks.registry import METRICS


def classification_metrics(y_true: Any, proba: Any, names: list[str]) -> dict[str, float]:
    """Registered metrics `names` of class probabilities `proba` (n, classes) against integer labels."""
    return {name: float(METRICS.get(name).fn(y_true, proba)) for name in names}


def regression_metrics(y_true: Any, y_pred: Any, names: list[str]) -> dict[str, float]:
    """Registered metrics `names` of predictions against targets (both in target units)."""
    return {name: float(METRICS.get(name).fn(y_true, y_pred)) for name in names}


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
    import numpy as np

    plt = pyplot()

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
    return save_figure(fig, path)


def plot_learning_curve(history: list[dict[str, float]], path: Path, best_epoch: int | None = None) -> Path:
    """Loss curves on the left, validation metrics on the right, the restored epoch marked."""
    plt = pyplot()

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
    return save_figure(fig, path)


def record_evaluation(report: dict[str, Any], metrics: dict[str, float], train_result: Any, config: EvaluateConfig,
                      logger: Any) -> dict[str, Any]:
    """Add the prefixed test metrics and training summary to `report`; log metrics, report JSON and plots."""
    import tempfile

    from tasks.tracking.logger import write_json

    prefixed = {f"{SPLIT_PREFIX['test']}_{k}": v for k, v in metrics.items()}
    report["metrics"] = prefixed
    if train_result is not None:
        report["training"] = {"best_epoch": train_result.best_epoch, "epochs_run": train_result.epochs_run,
                              "stopped_early": train_result.stopped_early,
                              "train_samples_per_s": train_result.train_samples_per_s}
    if logger:
        # step 0, not the last epoch's: one value per run, which MLflow charts as a bar (compared across runs)
        logger.log_metrics(prefixed, step=0)
        with tempfile.TemporaryDirectory(prefix="fuseflow-eval-") as tmp:
            folder = Path(tmp)
            write_json(folder / "evaluation_report.json", report)
            if "confusion_matrix" in report and config.confusion_matrix:
                plot_confusion_matrix(report["confusion_matrix"], report["class_names"], folder / "confusion_matrix.png")
            if train_result is not None and train_result.history and config.learning_curve:
                plot_learning_curve(train_result.history, folder / "learning_curve.png", train_result.best_epoch)
            logger.log_artifacts(folder, "evaluation")
    return report
