"""A pipeline's data, loaded and checked before its MLflow run opens (flows/pipeline.py): a data problem (too few rows
for three splits, a single class, a training split without a second class, a column no type fits) is then a config
error located in pipelines.yaml, and leaves no MLflow run behind. `BEFORE_RUN` says what each pipeline kind loads:
a training pipeline its splits (the body takes them instead of loading again), a fusion the members' shared data
(the fusion body takes it), a sweep the data of each distinct load among its trials (checked only: the trials load
it again inside their own runs, from the step cache where there is one: not for text data, nor with --no-cache)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from tasks.errors import ConfigError
from tasks.pipeline.resolved import ResolvedPipeline
from tasks.pipeline.spec import PipelineSpec
from tasks.tracking.logger import RunLogger

#: the `load-data` phase, as the run's timings name it
PHASE = "load-data"


@dataclass
class LoadedData:
    """The splits of one pipeline's data and the load step's cache decision (tagged on the run as the body's other
    steps are)."""

    splits: Any  # TabularSplits or TextSplits
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)


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
    splits = DATA_STEPS[pipeline.modality or "tabular"](pipeline.spec, base_dir, decisions)
    return LoadedData(splits, decisions)


def check_sweep_data(pipeline: ResolvedPipeline, base_dir: Path) -> None:
    """Load the data of each distinct load among a sweep's planned trials (or, for a sampler, the ends of its ranges):
    a problem is the sweep's config error, naming the trial (or the values) when the sweep varies its data."""
    from tasks.sweep.trials import SweepTrial, corner_values

    planned = bool(pipeline.trials)
    trials = pipeline.trials or [SweepTrial(i, values, pipeline.resolve_trial(values))
                                 for i, values in enumerate(corner_values(pipeline.spec.sweep))]
    distinct: dict[str, tuple[Any, ResolvedPipeline]] = {}
    for trial in trials:
        resolved = ResolvedPipeline(trial.spec)
        distinct.setdefault(_load_key(resolved), (trial, resolved))
    for trial, resolved in distinct.values():
        try:
            load_training_data(resolved, base_dir)
        except ConfigError as err:
            if len(distinct) == 1:
                raise
            label = trial.name if planned else "the values"
            raise ConfigError([replace(issue, message=f"in {label} ({trial.describe()}): {issue.message}")
                               for issue in err.issues]) from err


def _load_key(pipeline: ResolvedPipeline) -> str:
    """What a pipeline's loaded data depends on: its data section, the loss (which checks the label), and its seed
    where that seed splits the data (no `data.split.seed`) or draws text rows for `max_samples`."""
    spec = pipeline.spec
    split_seed = getattr(getattr(spec.data, "split", None), "seed", None)
    seeded = split_seed is None or pipeline.modality == "text"
    load = [spec.data.model_dump(mode="json"), spec.seed if seeded else None, getattr(spec.train, "loss", None)]
    return json.dumps(load, sort_keys=True, default=str)


def load_fusion_data_before_run(pipeline: ResolvedPipeline, base_dir: Path) -> Any:
    """The members' shared data (a `tasks.fusion.fuse.FusionData`); a problem is located at the first member, the
    data's key path named in the message."""
    from tasks.errors import format_path
    from tasks.fusion.fuse import load_fusion_data

    try:
        return load_fusion_data(pipeline.fusion.data, base_dir)
    except ConfigError as err:
        first = pipeline.fusion.members[0]
        raise ConfigError([replace(issue, path=("fusion", "members", first.index), message=(
            f"the members' shared data (of member {first.name}, {first.describe})"
            f"{': ' + format_path(issue.path) if issue.path else ''}: {issue.message}"))
            for issue in err.issues]) from err


#: pipeline kind -> what loads (and checks) its data before its MLflow run opens; the result, unless None, is
#: given to the kind's body as `data`
BEFORE_RUN: dict[str, Callable[[ResolvedPipeline, Path], Any]] = {
    "training": load_training_data,
    "sweep": check_sweep_data,
    "fusion": load_fusion_data_before_run,
}


def splits_in_run(data: Optional[LoadedData], pipeline: ResolvedPipeline, logger: RunLogger,
                  base_dir: Path) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The splits and the cache decisions so far: of `data`, loaded before the run opened (flows/pipeline.py counts
    its seconds as the run's `load-data` phase), or, for a fusion member or sweep trial, loaded now inside its own
    run."""
    if data is None:
        with logger.phase(PHASE):
            data = load_training_data(pipeline, base_dir)
    return data.splits, dict(data.decisions)


def count_before_run(logger: RunLogger, phase: str, seconds: float) -> None:
    """Time a phase spent before the run opened: under `phase`, and no longer under `startup` (the run's timer counts
    all time before it was made as start-up)."""
    timings = logger.phases.seconds
    if "startup" in timings:
        timings["startup"] = max(0.0, timings["startup"] - seconds)
    logger.phases.add(phase, seconds)
