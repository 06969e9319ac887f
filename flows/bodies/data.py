"""A training pipeline's data, loaded and checked before its MLflow run opens (flows/pipeline.py): a data problem
(too few rows for three splits, a single class, a training split without a second class, a column no type fits) is
then a config error located at the pipeline's `data:` section, and leaves no MLflow run behind. The body takes the
loaded splits instead of loading them again. Fusion members and sweep trials load their data inside their own runs,
as before (their data was the parent's, or is the trial's own)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from tasks.pipeline.resolved import ResolvedPipeline
from tasks.pipeline.spec import PipelineSpec
from tasks.tracking.logger import RunLogger

#: the `load-data` phase, as the run's timings name it
PHASE = "load-data"


@dataclass
class LoadedData:
    """The splits of one pipeline's data, the load step's cache decision (tagged on the run as the body's other steps
    are) and the seconds it took (the run's `load-data` phase, although the run opened after it)."""

    splits: Any  # TabularSplits or TextSplits
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def _tabular(spec: PipelineSpec, base_dir: Path, decisions: dict[str, dict[str, Any]]) -> Any:
    from tasks.cache.policy import cached_step
    from tasks.steps import tabular as steps

    return cached_step(steps.load_data, decisions)(spec.data, spec.seed, base_dir, getattr(spec.train, "loss", None))


def _text(spec: PipelineSpec, base_dir: Path, decisions: dict[str, dict[str, Any]]) -> Any:
    from tasks.steps import text as steps_text

    return steps_text.load_data(spec.data, spec.seed, base_dir)


#: data modality -> its load step (the step the body would run first), given the decisions to record into
DATA_STEPS: dict[str, Callable[[PipelineSpec, Path, dict[str, dict[str, Any]]], Any]] = {
    "tabular": _tabular,
    "text": _text,
}


def load_training_data(pipeline: ResolvedPipeline, base_dir: Path) -> LoadedData:
    """Run the data step of a training pipeline (under the caller's cache options and retry policy); a data
    problem raises the step's ConfigError (key paths under `data`, not yet located in the file)."""
    decisions: dict[str, dict[str, Any]] = {}
    began = time.perf_counter()
    splits = DATA_STEPS[pipeline.modality or "tabular"](pipeline.spec, base_dir, decisions)
    return LoadedData(splits, decisions, time.perf_counter() - began)


def splits_in_run(data: Optional[LoadedData], pipeline: ResolvedPipeline, logger: RunLogger,
                  base_dir: Path) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The splits and the cache decisions so far: of `data`, loaded before the run opened (its seconds counted as
    the run's `load-data` phase), or, for a fusion member or sweep trial, loaded now inside the run."""
    if data is None:
        with logger.phase(PHASE):
            data = load_training_data(pipeline, base_dir)
    else:
        count_before_run(logger, PHASE, data.seconds)
    return data.splits, dict(data.decisions)


def count_before_run(logger: RunLogger, phase: str, seconds: float) -> None:
    """Time a phase spent before the run opened: under `phase`, and no longer under `startup` (the run's timer counts
    all time before it was made as start-up)."""
    timings = logger.phases.seconds
    if "startup" in timings:
        timings["startup"] = max(0.0, timings["startup"] - seconds)
    logger.phases.add(phase, seconds)
