"""A sweep's outcome: each trial's status (finished, pruned, failed) and metric read back from MLflow, the ranking,
and the trials table (CSV and markdown). The study's plots are in `tasks.sweep.plots`."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from tasks.tracking import tags

#: the status of a trial its pruner stopped (its MLflow run is KILLED and tagged pruned)
PRUNED = "PRUNED"


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
    pruned_after_epoch: Optional[int] = None

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
            if run.data.tags.get(tags.SWEEP_TRIAL_STATE) == "pruned":
                result.status, result.error = PRUNED, None
                result.pruned_after_epoch = int(run.data.tags.get(tags.SWEEP_PRUNED_EPOCH, 0)) or None
                result.metric = metric_of_run(client, run, metric)  # its last value: shown, never ranked
            elif run.info.status == "FINISHED":
                result.metric = metric_of_run(client, run, metric)
                result.test_metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
        results.append(result)
    return results


def ranked(results: list[TrialResult], mode: str) -> list[TrialResult]:
    """Finished trials that logged the metric, best first (ties: the earlier trial first)."""
    scored = [r for r in results if r.status == "FINISHED" and r.metric is not None and math.isfinite(r.metric)]
    sign = -1.0 if mode == "max" else 1.0
    return sorted(scored, key=lambda r: (sign * r.metric, r.index))


def table_rows(results: list[TrialResult], metric: str, order: list[TrialResult]) -> list[dict[str, Any]]:
    rank = {r.index: i + 1 for i, r in enumerate(order)}
    rows = []
    for r in results:
        rows.append({"trial": r.index, "rank": rank.get(r.index), "status": r.status,
                     **{k: _cell(v) for k, v in r.values.items()}, metric: r.metric,
                     "pruned_after_epoch": r.pruned_after_epoch,
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
