"""The search loop's state, driven by ask/tell from the flow: which trial runs next (a planned one, or one Optuna's
sampler asks for), and what each finished trial told the study (its metric, pruned, or failed).

A `SweepSearch` is the job feed of `flows.nested.run_nested`: `next_job()` gives the next trial's job (None when the
budget, the time limit or the plan is used up), `job_done(job, outcome)` tells the study. On a reopened study
(`--resume`) the trials the interrupted attempt finished or pruned count and are not run again; the ones it left
running are told as they ended in MLflow (finished) or failed, and a planned one is run again."""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Optional

from tasks.sweep.space import decode, encode, to_optuna
from tasks.sweep.trials import SweepTrial

log = logging.getLogger("fuseflow")

INDEX_ATTR = "fuseflow_index"
#: (trial, its pruning reporter or None) -> the job the runner trains
MakeJob = Callable[[SweepTrial, Optional[Any]], Any]
#: a job's outcome -> ("complete", value) | ("pruned", None) | ("fail", None)
Judge = Callable[[Any], tuple[str, Optional[float]]]


class SweepSearch:
    """Ask/tell over the sweep's study. `planned`: the trials fixed up front (grid, random; for a model-based
    sampler its random startup trials); `finished`: trial index -> metric of trials MLflow holds as FINISHED."""

    __slots__ = ("study", "sweep", "ref", "epochs", "make_job", "judge", "resolve_trial", "planned", "budget",
                 "deadline", "done", "in_flight", "trials", "_next_index", "_reporting", "pruned", "failed", "_seen")

    def __init__(self, study: Any, ref: Any, sweep: Any, epochs: int, planned: list[SweepTrial],
                 resolve_trial: Callable[[dict[str, Any]], Any], make_job: MakeJob, judge: Judge,
                 recorded: dict[int, tuple[str, Optional[float]]]) -> None:
        self.study, self.ref, self.sweep, self.epochs = study, ref, sweep, epochs
        self.make_job, self.judge, self.resolve_trial = make_job, judge, resolve_trial
        self.deadline = time.monotonic() + sweep.timeout if sweep.timeout else None
        self.in_flight: dict[str, tuple[Any, SweepTrial]] = {}
        self.trials: dict[int, SweepTrial] = {}  # every trial of this sweep, by index (resumed ones included)
        self.done: set[int] = set()
        self.pruned: set[int] = set()
        self.failed: dict[int, str] = {}
        self._seen: set[int] = set()  # every trial index the study holds (failed ones are never reused)
        self._reporting = sweep.pruner.prunes
        self._reconcile(recorded, {t.index: t for t in planned})
        self.planned = [t for t in planned if t.index not in self.done]
        self.budget = sweep.trial_count - len(self.done)
        used = [*self._seen, *(t.index for t in planned)]
        self._next_index = max(used) + 1 if used else 0

    # --- resume ---------------------------------------------------------------------------------------------
    def _reconcile(self, recorded: dict[int, tuple[str, Optional[float]]], planned: dict[int, SweepTrial]) -> None:
        """Count what a reopened study holds (and its MLflow runs confirm); tell its stale running trials how their
        runs ended."""
        import json

        from optuna.trial import TrialState

        for frozen in self.study.get_trials(deepcopy=False):
            index = frozen.user_attrs.get(INDEX_ATTR)
            if index is None:
                continue
            self._seen.add(index)
            values = frozen.user_attrs.get("values", {})
            run_values, metric = recorded.get(index, (None, None))
            confirmed = run_values == json.dumps(values)
            if frozen.state in (TrialState.RUNNING, TrialState.WAITING):
                if frozen.state == TrialState.WAITING:  # enqueued, never asked: take it off the queue
                    frozen = self.study.ask()
                if confirmed and metric is not None and math.isfinite(metric):
                    self.study.tell(frozen.number, metric)
                    state = TrialState.COMPLETE
                elif confirmed and metric is None:
                    self.study.tell(frozen.number, state=TrialState.PRUNED)
                    state = TrialState.PRUNED
                else:
                    self.study.tell(frozen.number, state=TrialState.FAIL)
                    state = TrialState.FAIL
            else:
                state = frozen.state
            if state in (TrialState.COMPLETE, TrialState.PRUNED) and confirmed:
                self.done.add(index)
                self.trials[index] = planned.get(index) or SweepTrial(index, values)
                if state == TrialState.PRUNED:
                    self.pruned.add(index)

    # --- the feed -------------------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """How many trials this attempt runs at most (the runner's concurrency is bounded by it)."""
        return max(0, self.budget)

    def next_job(self) -> Optional[Any]:
        """The next trial's job, or None: budget spent, time limit reached, or (planned samplers) plan done."""
        if self.budget <= 0 or (self.deadline is not None and time.monotonic() >= self.deadline):
            return None
        trial, asked = self._ask_planned() if self.planned else self._ask_sampler()
        if trial is None:
            return None
        self.budget -= 1
        self.trials[trial.index] = trial
        reporter = self._reporter(asked) if self._reporting else None
        job = self.make_job(trial, reporter)
        self.in_flight[job.key] = (asked, trial)
        log.info("sweep: %s starts (%s)", trial.name, trial.describe())
        return job

    def job_done(self, job: Any, outcome: Any) -> None:
        """Tell the study how the trial ended."""
        from optuna.trial import TrialState

        asked, trial = self.in_flight.pop(job.key)
        try:
            state, value = self.judge(outcome)
        except Exception as exc:  # noqa: BLE001 - reading the trial's run back failed: that trial failed, not the sweep
            log.warning("sweep: %s could not be judged: %s: %s", trial.name, type(exc).__name__, exc)
            state, value = "fail", None
        if state == "complete" and value is not None and math.isfinite(value):
            self.study.tell(asked, value)
            self.done.add(trial.index)
        elif state == "pruned":
            self.study.tell(asked, state=TrialState.PRUNED)
            self.done.add(trial.index)
            self.pruned.add(trial.index)
        else:
            self.study.tell(asked, state=TrialState.FAIL)
            self.failed[trial.index] = getattr(outcome, "error", None) or "no value of the metric"

    # --- asking ---------------------------------------------------------------------------------------------
    def _distributions(self) -> dict[str, Any]:
        return {k: to_optuna(v) for k, v in self.sweep.parameters.items()}

    def _ask_planned(self) -> tuple[Optional[SweepTrial], Any]:
        """The next planned trial, as a study trial with its values fixed (enqueued, then asked)."""
        while self.planned and self.budget > 0:
            trial = self.planned.pop(0)
            params = {k: encode(self.sweep.parameters[k], v) for k, v in trial.values.items()}
            self.study.enqueue_trial(params, user_attrs={INDEX_ATTR: trial.index, "values": trial.values})
            asked = self.study.ask(self._distributions())
            if self._resolved(trial, asked):
                return trial, asked
        if self.sweep.resolved_sampler.planned or self.budget <= 0:
            return None, None
        return self._ask_sampler()

    def _ask_sampler(self) -> tuple[Optional[SweepTrial], Any]:
        """A trial the sampler proposes, resolved into its pipeline; a value the pipeline refuses fails that trial
        in the study (the sampler learns from it) and the next is asked, up to the budget."""
        while self.budget > 0:
            asked = self.study.ask(self._distributions())
            values = {k: decode(self.sweep.parameters[k], asked.params[k]) for k in self.sweep.parameters}
            trial = SweepTrial(self._next_index, values)
            self._next_index += 1
            asked.set_user_attr(INDEX_ATTR, trial.index)
            asked.set_user_attr("values", values)
            if self._resolved(trial, asked):
                return trial, asked
        return None, None

    def _resolved(self, trial: SweepTrial, asked: Any) -> bool:
        """Give `trial` its pipeline spec; a value the pipeline refuses fails the trial in the study (a sampler
        learns from it) and uses one trial of the budget."""
        from optuna.trial import TrialState

        from tasks.errors import ConfigError

        if trial.spec is not None:
            return True
        try:
            trial.spec = self.resolve_trial(trial.values)
            return True
        except ConfigError as err:
            self.study.tell(asked, state=TrialState.FAIL)
            self.budget -= 1
            self.trials[trial.index] = trial
            self.failed[trial.index] = f"not a valid pipeline: {err}".splitlines()[0]
            log.warning("sweep: %s (%s) is not a valid pipeline: %s", trial.name, trial.describe(), err)
            return False

    def _reporter(self, asked: Any) -> Any:
        from tasks.sweep.pruning import PruningReporter

        # the storage's id of the trial (Optuna's `Trial(study, trial_id)` takes it; `number` counts per study)
        return PruningReporter(self.ref, asked._trial_id, self.sweep.metric, self.sweep.pruner, self.epochs)
