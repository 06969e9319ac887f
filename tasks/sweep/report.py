"""A sweep's outcome: each trial's status and metric read back from MLflow, the ranking, the trials table (CSV and
markdown) and a parallel-coordinates plot of parameters against the metric."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from tasks.plots import pyplot, save_figure
from tasks.tracking import tags


@dataclass
class TrialResult:
    """One trial as the sweep saw it: values, MLflow run, status, the ranking metric, and why it failed."""

    index: int
    values: dict[str, Any]
    run_id: Optional[str] = None
    status: str = "FAILED"
    metric: Optional[float] = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    error: Optional[str] = None

    @property
    def name(self) -> str:
        return f"trial-{self.index}"


def metric_of_run(client: Any, run: Any, metric: str) -> Optional[float]:
    """The run's value of `metric`: a per-epoch metric at the run's `best_epoch` when the model keeps that epoch's
    weights (early stopping's `restore_best`, hf_trainer's `best_model_metric`), else its last logged value (the
    last epoch's weights are kept); None if never logged."""
    metrics = run.data.metrics
    if metric not in metrics:
        return None
    best_epoch = metrics.get("best_epoch")
    params = run.data.params
    keeps_best = (params.get("train.early_stopping.restore_best") == "True" or bool(params.get("train.best_model_metric")))
    if metric.startswith(("val_", "train_")) and best_epoch and keeps_best:
        history = client.get_metric_history(run.info.run_id, metric)
        at_best = [m.value for m in history if m.step == int(best_epoch)]
        if at_best:
            return float(at_best[-1])
    return float(metrics[metric])


def trial_runs(client: Any, parent_run_id: str, experiment_id: str) -> dict[int, Any]:
    """The nested run of each trial index under the parent; when a resumed sweep ran a trial again, its FINISHED
    run, else its latest."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                              max_results=10_000)
    by_index: dict[int, Any] = {}
    for run in sorted((r for r in runs if tags.SWEEP_TRIAL in r.data.tags),
                      key=lambda r: (r.info.status == "FINISHED", r.info.start_time or 0)):
        by_index[int(run.data.tags[tags.SWEEP_TRIAL])] = run  # the last one wins: finished, then newest
    return by_index


def collect(client: Any, parent_run_id: str, experiment_id: str, trials: list[Any], errors: dict[int, str],
            metric: str) -> list[TrialResult]:
    """Every trial's result, from its nested MLflow run (found by the trial tag under the parent)."""
    by_index = trial_runs(client, parent_run_id, experiment_id)
    results = []
    for trial in trials:
        result = TrialResult(trial.index, dict(trial.values), error=errors.get(trial.index))
        run = by_index.get(trial.index)
        if run is not None:
            result.run_id, result.status = run.info.run_id, run.info.status
            result.error = result.error or run.data.tags.get(tags.ERROR)
            if run.info.status == "FINISHED":
                result.metric = metric_of_run(client, run, metric)
                result.test_metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
        results.append(result)
    return results


def ranked(results: list[TrialResult], mode: str) -> list[TrialResult]:
    """Finished trials that logged the metric, best first (ties: the earlier trial first)."""
    scored = [r for r in results if r.status == "FINISHED" and r.metric is not None and not math.isnan(r.metric)]
    sign = -1.0 if mode == "max" else 1.0
    return sorted(scored, key=lambda r: (sign * r.metric, r.index))


def table_rows(results: list[TrialResult], metric: str, order: list[TrialResult]) -> list[dict[str, Any]]:
    rank = {r.index: i + 1 for i, r in enumerate(order)}
    rows = []
    for r in results:
        rows.append({"trial": r.index, "rank": rank.get(r.index), "status": r.status,
                     **{k: _cell(v) for k, v in r.values.items()}, metric: r.metric,
                     **{k: v for k, v in sorted(r.test_metrics.items())}, "run_id": r.run_id,
                     "error": (r.error or "")[:200]})
    return rows


def markdown(rows: list[dict[str, Any]], metric: str, mode: str) -> str:
    """The trials table for the run's description (MLflow shows it as markdown), best first."""
    if not rows:
        return ""
    columns = [c for c in rows[0] if c not in ("run_id", "error")]
    ordered = sorted(rows, key=lambda r: (r["rank"] is None, r["rank"] or 0, r["trial"]))
    lines = [f"**sweep**: {len(rows)} trials ranked by `{metric}` ({mode})", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in ordered:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def plot_parallel(results: list[TrialResult], order: list[TrialResult], metric: str, mode: str, path: Path) -> Path:
    """Parallel coordinates: one axis per parameter plus the metric, one line per finished trial coloured by the
    metric (the best trial drawn thick); categorical values (lists, strings) get one tick each."""
    plt = pyplot()
    import matplotlib
    from matplotlib import cm, colors

    done = sorted(order, key=lambda r: r.index)  # the ranked trials: finished, with a number for the metric
    keys = list(results[0].values) if results else []
    axes_names = keys + [metric]
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(axes_names)), 4.5))
    if not done:
        ax.text(0.5, 0.5, "no trial finished", ha="center", va="center")
        ax.set_axis_off()
    else:
        columns, ticks = [], []
        for key in axes_names:
            raw = [r.metric if key == metric else r.values[key] for r in done]
            scaled, labels = _scale(raw)
            columns.append(scaled)
            ticks.append(labels)
        values = [r.metric for r in done]
        norm = colors.Normalize(min(values), max(values) if max(values) > min(values) else min(values) + 1e-9)
        cmap = matplotlib.colormaps["viridis"]
        best = done.index(order[0])
        xs = list(range(len(axes_names)))
        for i, r in enumerate(done):
            ys = [col[i] for col in columns]
            ax.plot(xs, ys, color=cmap(norm(values[i])), linewidth=3.0 if i == best else 1.2, alpha=0.9 if i == best else 0.7,
                    marker="o")
        for x, labels in zip(xs, ticks):
            ax.axvline(x, color="#444", linewidth=0.8)
            for y, text in labels:
                ax.text(x + 0.03, y, text, fontsize=7, va="center")
        ax.set_xticks(xs)
        ax.set_xticklabels(axes_names, fontsize=8)
        ax.set_yticks([])
        ax.set_ylim(-0.08, 1.08)
        fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric)
    failed = len(results) - len(done)
    best_name = f", best {order[0].name} (thick)" if order else ""
    ax.set_title(f"sweep: {len(done)} trials by {metric} ({mode}){best_name}"
                 + (f", {failed} not drawn (failed or no {metric})" if failed else ""), fontsize=9)
    return save_figure(fig, path)


def report_json(results: list[TrialResult], order: list[TrialResult], metric: str, mode: str) -> dict[str, Any]:
    return {"metric": metric, "mode": mode, "best_trial": order[0].index if order else None,
            "ranking": [r.index for r in order], "trials": [asdict(r) for r in results]}


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _scale(raw: list[Any]) -> tuple[list[float], list[tuple[float, str]]]:
    """Values -> positions in [0, 1] and tick labels: numbers linearly (log when they span > 2 decades),
    anything else as evenly spaced categories."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        nums = [float(v) for v in raw]
        log = min(nums) > 0 and max(nums) / min(nums) > 100
        tx = [math.log10(v) for v in nums] if log else nums
        lo, hi = min(tx), max(tx)
        span = hi - lo or 1.0
        ys = [(t - lo) / span if hi > lo else 0.5 for t in tx]
        labels = [(0.0 if hi > lo else 0.5, f"{min(nums):.3g}")] + ([(1.0, f"{max(nums):.3g}")] if hi > lo else [])
        return ys, labels
    cats = list(dict.fromkeys(json.dumps(v) if not isinstance(v, str) else v for v in raw))
    pos = {c: (i / (len(cats) - 1) if len(cats) > 1 else 0.5) for i, c in enumerate(cats)}
    keys = [json.dumps(v) if not isinstance(v, str) else v for v in raw]
    return [pos[k] for k in keys], [(pos[c], c) for c in cats]
