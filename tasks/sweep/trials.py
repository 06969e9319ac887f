"""A sweep's trials: each one's parameter values and validated pipeline spec, resolved before anything runs so a
value that breaks the pipeline (a negative learning rate in the grid) is a config error, not a failed trial."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from tasks.errors import ConfigError, format_path

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
    """Resolve every trial of `spec.sweep`: the problems (one per distinct cause) and the trials that resolved."""
    sweep = spec.sweep
    trials, issues, seen = [], [], set()
    for index, values in enumerate(sweep.assignments(spec.seed)):
        trial = SweepTrial(index, values)
        try:
            trial.spec = resolve_trial(values)
        except ConfigError as err:
            for issue in err.issues:
                where = format_path(issue.path) if issue.path else ""
                cause = f"{where}: {issue.message}" if where else issue.message
                if cause not in seen:
                    seen.add(cause)
                    issues.append((("sweep", "parameters"), f"{trial.name} ({trial.describe()}) is not a valid "
                                                             f"pipeline: {cause}"))
            continue
        trials.append(trial)
    if trials and not issues:
        issues += _check_against(sweep, trials[0].spec)
    return issues, trials


def _check_against(sweep: Any, trial_spec: Any) -> list[Issue]:
    """What only the trial's pipeline can tell: is the metric logged, can the best trials be fused."""
    from tasks.evaluate.names import metric_names

    issues: list[Issue] = []
    task = getattr(trial_spec.data, "task", "auto")
    name = sweep.metric.split("_", 1)[1]
    wrong_task = {"classification": metric_names("regression"),
                  "regression": metric_names("classification")}.get(task, ())
    if name in wrong_task:
        issues.append((("sweep", "metric"), f"'{sweep.metric}' is not logged by a {task} pipeline"))
    chosen = trial_spec.evaluate.metrics
    if sweep.metric.startswith("test_") and chosen is not None and name not in chosen:
        issues.append((("sweep", "metric"), f"'{sweep.metric}' is not among evaluate.metrics ({', '.join(chosen)}): "
                                            f"add '{name}' there or rank by another metric"))
    if sweep.fuse_top:
        if task == "regression":
            issues.append((("sweep", "fuse_top"), "fusion combines classifiers: a regression sweep cannot fuse_top"))
        varied = [k for k in sweep.parameters if k.split(".")[0] in ("model", "preprocess", "data")]
        if sweep.fuse_method.level == "weights" and varied:
            issues.append((("sweep", "fuse_method"), f"a soup averages the weights of one architecture on one "
                                                     f"data layout, but the sweep varies {', '.join(varied)}: use "
                                                     "an output-level method (mean, weighted, greedy)"))
    return issues
