"""The fusion report: what a fusion found (each member, the best member, the uniform mean and the fused model on
validation and test, the paired bootstrap interval of fused - best member on test, what shipped and why), as
dataclasses; its member table as Markdown, and a bar chart."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from tasks.plots import pyplot, save_figure


@dataclass
class Interval:
    """Mean of a paired per-sample difference (fused - best member) and its percentile interval."""

    delta: float
    low: float
    high: float
    samples: int
    confidence: float


@dataclass
class Scores:
    """The metrics of one row of the report, on validation and on test."""

    val: dict[str, float]
    test: dict[str, float]


@dataclass
class MemberScores(Scores):
    name: str
    source: str
    run_id: Optional[str]
    weight: float


@dataclass
class BestMember(Scores):
    """The member with the best validation score (accuracy, then log loss): what ships when fusion does not help."""

    name: str
    index: int


@dataclass
class FusionReport:
    """The outcome of one fusion; `to_dict()` is the run's `fusion/fusion_report.json`."""

    method: dict[str, Any]
    level: str  # "outputs" or "weights"
    classes: list[str]
    sizes: dict[str, int]
    data_digest: str
    members: list[MemberScores]
    best_member: BestMember
    mean: Scores
    fused: Scores
    combination: dict[str, Any]
    bootstrap: dict[str, Interval]
    gain_on_validation: bool
    require_gain: bool
    shipped: str  # "fused" or "best_member"
    note: str

    @property
    def method_name(self) -> str:
        return str(self.method.get("method"))

    @property
    def shipped_scores(self) -> Scores:
        return self.fused if self.shipped == "fused" else self.best_member

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_bootstrap(fused: np.ndarray, best: np.ndarray, samples: int, confidence: float, seed: int) -> Interval:
    """Mean of the per-sample difference (fused - best) and its percentile interval over paired resamples."""
    diff = np.asarray(fused, dtype=np.float64) - np.asarray(best, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(samples, len(diff)))
    means = diff[idx].mean(1)
    tail = (1 - confidence) / 2
    return Interval(float(diff.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail)),
                    samples, confidence)


def table_rows(report: FusionReport) -> list[dict[str, Any]]:
    """One row per member, then best member, mean and fused: name, weight, validation and test metrics."""
    rows = [{"name": m.name, "source": m.source, "weight": m.weight, "val": m.val, "test": m.test}
            for m in report.members]
    best = report.best_member
    rows.append({"name": f"best member ({best.name})", "source": "chosen on validation", "weight": None,
                 "val": best.val, "test": best.test})
    rows.append({"name": "mean", "source": "uniform average of probabilities", "weight": None,
                 "val": report.mean.val, "test": report.mean.test})
    rows.append({"name": f"fused ({report.method_name})", "source": "", "weight": None,
                 "val": report.fused.val, "test": report.fused.test})
    return rows


def markdown_table(report: FusionReport, metrics: Sequence[str] = ("accuracy", "f1_macro", "log_loss")) -> str:
    """The member table as Markdown (what a run's note or a PR comment shows)."""
    head = ["model", "weight", "val_accuracy"] + [f"test_{m}" for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table_rows(report):
        weight = "" if row["weight"] is None else f"{row['weight']:.3f}"
        cells = [row["name"], weight, f"{row['val'].get('accuracy', float('nan')):.4f}"]
        cells += [f"{row['test'].get(m, float('nan')):.4f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    ci = report.bootstrap["accuracy"]
    lines.append("")
    lines.append(f"fused - best member, test accuracy: {ci.delta:+.4f} "
                 f"({ci.confidence:.0%} CI {ci.low:+.4f} .. {ci.high:+.4f}, paired bootstrap)")
    lines.append(f"shipped: {report.shipped} — {report.note}")
    return "\n".join(lines) + "\n"


def plot_members(report: FusionReport, path: Path, metric: str = "accuracy") -> Path:
    """Bar chart of test `metric`: each member, best member, mean, fused (the shipped model hatched)."""
    plt = pyplot()
    rows = table_rows(report)
    names = [r["name"] for r in rows]
    values = [r["test"].get(metric, float("nan")) for r in rows]
    colors = ["#9bb7d4"] * len(report.members) + ["#4c72b0", "#8c8c8c", "#dd8452"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4))
    bars = ax.bar(range(len(rows)), values, color=colors)
    shipped = len(rows) - 1 if report.shipped == "fused" else len(report.members)
    bars[shipped].set_hatch("//")
    low = min(v for v in values if v == v)
    ax.set_ylim(max(0.0, low - 0.05), min(1.0, max(values) + 0.02) if metric != "log_loss" else max(values) * 1.1)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
    ci = report.bootstrap["accuracy"]
    ax.set(ylabel=f"test {metric}", title=f"fusion ({report.method_name}): fused - best = {ci.delta:+.3f} "
                                          f"[{ci.low:+.3f}, {ci.high:+.3f}]; shipped: {report.shipped} (hatched)")
    ax.title.set_fontsize(9)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)
