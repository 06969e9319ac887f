"""A sweep's trials: each one's parameter values and validated pipeline spec. Planned trials (grid, random) are all
resolved before anything runs, so a value that breaks the pipeline (a negative learning rate in the grid) is a config
error, not a failed trial; for a model-based sampler the ends of every range and every choice are resolved up front,
and each trial Optuna asks for is resolved when it is asked."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from tasks.errors import ConfigError, format_path
from tasks.sweep.space import corners

Issue = tuple[tuple, str]
ResolveTrial = Callable[[dict[str, Any]], Any]  # trial overrides (dotted key -> value) -> its PipelineSpec (no sweep)


@dataclass
class SweepTrial:
    """Trial `index` (0-based): its parameter values and the pipeline spec they give."""

    index: int
    values: dict[str, Any]
    spec: Any = field(repr=False, default=None)

    @property
    def name(self) -> str:
        return f"trial-{self.index}"

    def describe(self) -> str:
        return ", ".join(f"{k}={json.dumps(v)}" for k, v in self.values.items())


def resolve_trials(spec: Any, resolve_trial: ResolveTrial) -> tuple[list[Issue], list[SweepTrial]]:
    """Resolve the trials of `spec.sweep` that can be known now: the problems (one per distinct cause) and the
    planned trials (every one for grid and random; the ranges' ends, checked and not kept, for the others)."""
    sweep = spec.sweep
    planned = sweep.resolved_sampler.planned
    candidates = sweep.assignments(spec.seed) if planned else corner_values(sweep)
    trials, issues, seen = [], [], set()
    for index, values in enumerate(candidates):
        trial = SweepTrial(index, values)
        try:
            trial.spec = resolve_trial(values)
        except ConfigError as err:
            for issue in err.issues:
                where = format_path(issue.path) if issue.path else ""
                cause = f"{where}: {issue.message}" if where else issue.message
                if cause not in seen:
                    seen.add(cause)
                    label = trial.name if planned else "the values"
                    issues.append((("sweep", "parameters"), f"{label} ({trial.describe()}) is not a valid "
                                                             f"pipeline: {cause}"))
            continue
        trials.append(trial)
    if trials and not issues:
        issues += _check_against(sweep, trials[0].spec)
    return issues, trials if planned else []


def corner_values(sweep: Any) -> list[dict[str, Any]]:
    """One assignment per end of each range and per choice, the other parameters at their first value: together
    they meet every bound a sampled trial could cross."""
    keys = list(sweep.parameters)
    base = {k: corners(sweep.parameters[k])[0] for k in keys}
    found = [dict(base)]
    for key in keys:
        for value in corners(sweep.parameters[key])[1:]:
            found.append({**base, key: value})
    return found


def _check_against(sweep: Any, trial_spec: Any) -> list[Issue]:
    """What only the trial's pipeline can tell: is the metric logged, can trials be pruned, can the best be fused."""
    from tasks.evaluate.names import metric_names

    issues: list[Issue] = []
    task = getattr(trial_spec.data, "task", "auto")
    name = sweep.metric.split("_", 1)[1]
    wrong_task = {"classification": metric_names("regression"),
                  "regression": metric_names("classification")}.get(task, ())
    if name in wrong_task:
        issues.append((("sweep", "metric"), f"'{sweep.metric}' is not logged by a {task} pipeline"))
    if sweep.pruner.prunes and getattr(trial_spec.train, "distributed", None) is not None:
        issues.append((("sweep", "pruner"), "a trial trained with train.distributed reports its epochs from other "
                                            "processes, so it cannot be pruned: set `pruner: none` or drop "
                                            "train.distributed"))
    if sweep.fuse_top:
        if task == "regression":
            issues.append((("sweep", "fuse_top"), "fusion combines classifiers: a regression sweep cannot fuse_top"))
        varied = [k for k in sweep.parameters if k.split(".")[0] in ("model", "preprocess", "data")]
        if sweep.fuse_method.level == "weights" and varied:
            issues.append((("sweep", "fuse_method"), f"a soup averages the weights of one architecture on one "
                                                     f"data layout, but the sweep varies {', '.join(varied)}: use "
                                                     "an output-level method (mean, weighted, greedy)"))
    return issues
