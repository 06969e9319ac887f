"""The scoring loop: read a batch, cast it to the model's signature, predict, write the chosen output columns,
count; with a progress bar, and the output committed only when every batch is in."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tasks.errors import ConfigError
from tasks.scoring.conform import conform, missing_columns, signature_inputs
from tasks.scoring.drift import DriftMeter
from tasks.scoring.reader import batches, input_columns
from tasks.scoring.tally import Tally, metric_name
from tasks.scoring.writer import open_sink

log = logging.getLogger("fuseflow")


@dataclass
class ScoringResult:
    """What a scoring run did: rows in and out, where they went, how long it took, what it predicted, drift."""

    rows: int
    location: str
    seconds: float
    metrics: dict[str, float]
    distribution: list[dict[str, Any]]
    drift: list[dict[str, Any]] = field(default_factory=list)
    task: str = "classification"


def output_columns(predictions: Any, config: Any) -> list[str]:
    """keep_columns, then label (or prediction), then proba_<class> (or score), as `outputs` asks."""
    names = list(config.keep_columns)
    if "label" in config.outputs:
        names += [c for c in ("label", "prediction") if c in predictions.columns]
    if "proba" in config.outputs:
        names += [c for c in predictions.columns if c.startswith("proba_") or c == "score"]
    return names


def check_inputs(config: Any, inputs: Optional[list[dict[str, Any]]], base_dir: Path) -> list[str]:
    """The input's columns, after checking they give every required model input and every `keep_columns` entry."""
    columns = input_columns(config.data, base_dir)
    missing = missing_columns(columns, inputs)
    if missing:
        raise ConfigError.single(f"the rows to score lack the model's input column(s) {missing} (the model "
                                 f"takes: {', '.join(i['name'] for i in inputs or [])})",
                                 ("predict", "data"))
    absent = [c for c in config.keep_columns if c not in columns]
    if absent:
        from tasks.errors import did_you_mean

        raise ConfigError.single(f"keep_columns names {absent[0]!r}, which the rows lack"
                                 f"{did_you_mean(absent[0], columns)}", ("predict", "keep_columns"))
    return columns


def score_rows(config: Any, model: Any, base_dir: Path, values: dict[str, str],
               profile: Optional[dict[str, Any]] = None) -> ScoringResult:
    """Score every row of `config.data` with `model` into `config.output`; all or nothing."""
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    inputs = signature_inputs(model)
    columns = check_inputs(config, inputs, base_dir)
    label = config.data.label_column if config.data.label_column in columns else None
    tally = Tally()
    meter = DriftMeter(profile) if profile and config.drift.enabled else None
    started = time.perf_counter()
    with open_sink(config.output, base_dir, values) as sink, \
            Progress(SpinnerColumn(), TextColumn("scoring"), MofNCompleteColumn(), TextColumn("rows"),
                     TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), transient=True) as progress:
        bar = progress.add_task("score", total=None, rate="")
        names: Optional[list[str]] = None
        for batch in batches(config.data, base_dir, config.batch_size):
            predictions = _predict(model, conform(batch, inputs, tally.rows))
            predictions.index = batch.index
            if names is None:
                names = output_columns(predictions, config)
                sink.check(names)
            frame = batch[config.keep_columns].join(predictions[[n for n in names if n not in config.keep_columns]])
            sink.write(frame[names])
            tally.update(predictions, batch[label] if label else None)
            if meter is not None:
                meter.update(batch)
            elapsed = time.perf_counter() - started
            progress.update(bar, completed=tally.rows, rate=f"{tally.rows / max(elapsed, 1e-9):,.0f} rows/s")
        location = sink.commit()
    seconds = time.perf_counter() - started
    metrics = tally.metrics()
    metrics["rows_per_s"] = tally.rows / max(seconds, 1e-9)
    drift = meter.table(config.drift.warn_above) if meter is not None else []
    for row in drift:
        metrics[metric_name(f"drift_psi.{row['column']}")] = row["psi"]
    if drift:
        metrics["drift_psi_max"] = max(r["psi"] for r in drift)
    task = "regression" if "pred_mean" in metrics else "classification"
    return ScoringResult(tally.rows, location, seconds, metrics, tally.distribution(), drift, task)


def _predict(model: Any, rows: Any) -> Any:
    """The model's predictions of `rows` as a DataFrame (`prediction` for a bare array)."""
    import pandas as pd

    result = model.predict(rows)
    if isinstance(result, pd.DataFrame):
        return result.reset_index(drop=True)
    if isinstance(result, pd.Series):
        return result.to_frame("prediction").reset_index(drop=True)
    return pd.DataFrame({"prediction": list(result)})
