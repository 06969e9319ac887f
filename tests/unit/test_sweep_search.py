"""The ask/tell loop over a real Optuna study in sqlite, with no training: planned trials keep their values, the
sampler's trials stay in their ranges, values the pipeline refuses use the budget, a reopened study counts only what
MLflow confirms, the time limit stops new trials, and the pruning reporter stops a trial worse than the median."""
from __future__ import annotations

import json
import types

import pytest

from tasks.errors import ConfigError, ConfigIssue
from tasks.sweep.config import SweepConfig
from tasks.sweep.pruning import PruningReporter
from tasks.sweep.search import SweepSearch
from tasks.sweep.study import StudyRef, masked_url, open_study, study_storage
from tasks.sweep.trials import SweepTrial
from tasks.train.observers import TrialPruned, notify, observing


def _sweep(**fields) -> SweepConfig:
    return SweepConfig.model_validate({"metric": "val_loss", **fields})


def _search(tmp_path, sweep, planned=None, recorded=None, resolve=None, name="s"):
    ref = StudyRef(study_storage(None, "sqlite:///mlruns/mlflow.db", tmp_path), name)
    study = open_study(ref, sweep, epochs=10, seed=3)
    jobs = []

    def make_job(trial, reporter):
        job = types.SimpleNamespace(key=trial.name, trial=trial, reporter=reporter)
        jobs.append(job)
        return job

    def judge(outcome):
        return outcome

    search = SweepSearch(study, ref, sweep, 10, planned if planned is not None else [],
                         resolve or (lambda values: f"spec{values}"), make_job, judge, recorded or {})
    return search, study, jobs


def _drain(search, value=lambda trial: 1.0):
    done = []
    while (job := search.next_job()) is not None:
        search.job_done(job, ("complete", value(job.trial)))
        done.append(job.trial)
    return done


def test_planned_trials_run_with_their_values_and_the_study_records_them(tmp_path):
    sweep = _sweep(parameters={"lr": [0.1, 0.2], "hidden": [[8], [16, 8]]})
    planned = [SweepTrial(i, v, spec="x") for i, v in enumerate(sweep.assignments(0))]
    search, study, _ = _search(tmp_path, sweep, planned)
    trials = _drain(search, lambda t: t.values["lr"])
    assert [t.values for t in trials] == sweep.assignments(0) and search.next_job() is None
    stored = sorted(study.trials, key=lambda t: t.number)
    assert [t.user_attrs["fuseflow_index"] for t in stored] == [0, 1, 2, 3]
    assert [t.params["hidden"] for t in stored] == ["[8]", "[16, 8]", "[8]", "[16, 8]"]  # lists as JSON choices
    assert study.best_value == pytest.approx(0.1)


def test_sampler_trials_stay_in_range_and_decode_lists(tmp_path):
    sweep = _sweep(parameters={"lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-1},
                               "width": {"distribution": "int", "low": 8, "high": 64, "step": 8},
                               "hidden": [[8], [16, 8]]}, trials=12, sampler={"tpe": {"n_startup_trials": 3}})
    planned = [SweepTrial(i, v) for i, v in enumerate(sweep.assignments(3, 3))]
    search, study, _ = _search(tmp_path, sweep, planned)
    trials = _drain(search, lambda t: abs(t.values["lr"] - 1e-2) + t.values["width"] / 1000)
    assert len(trials) == 12 and [t.index for t in trials] == list(range(12))
    assert [t.values for t in trials[:3]] == sweep.assignments(3, 3)  # the startup trials are the planned draws
    for t in trials:
        assert 1e-4 <= t.values["lr"] <= 1e-1 and t.values["width"] % 8 == 0 and t.values["hidden"] in ([8], [16, 8])
        assert t.spec == f"spec{t.values}"  # resolved into its pipeline when asked
    assert len(study.trials) == 12


def test_a_value_the_pipeline_refuses_fails_its_trial_and_uses_the_budget(tmp_path):
    sweep = _sweep(parameters={"lr": {"distribution": "uniform", "low": 0.0, "high": 1.0}}, trials=6,
                   sampler="tpe")

    def resolve(values):
        if values["lr"] > 0.5:
            raise ConfigError([ConfigIssue(("train", "optimizer", "lr"), "too large")])
        return "ok"

    search, study, _ = _search(tmp_path, sweep, resolve=resolve)
    ran = _drain(search)
    refused = [i for i, e in search.failed.items() if "not a valid pipeline" in e]
    assert len(ran) + len(refused) == 6 and all(t.values["lr"] <= 0.5 for t in ran)
    assert sum(t.state.name == "FAIL" for t in study.trials) == len(refused)


def test_pruned_and_failed_outcomes_are_told_to_the_study(tmp_path):
    sweep = _sweep(parameters={"lr": [0.1, 0.2, 0.3]})
    planned = [SweepTrial(i, v, spec="x") for i, v in enumerate(sweep.assignments(0))]
    search, study, _ = _search(tmp_path, sweep, planned)
    for outcome in (("complete", 0.5), ("pruned", None), ("fail", None)):
        search.job_done(search.next_job(), outcome)
    assert [t.state.name for t in sorted(study.trials, key=lambda t: t.number)] == ["COMPLETE", "PRUNED", "FAIL"]
    assert search.done == {0, 1} and search.pruned == {1} and set(search.failed) == {2}


def test_a_reopened_study_counts_what_mlflow_confirms_and_reruns_the_rest(tmp_path):
    """The interrupted attempt: trial 0 finished, trial 1 was left running though its run finished, trial 2 was
    left running and lost, trial 3 finished in the study but its MLflow run was killed afterwards."""
    sweep = _sweep(parameters={"lr": [0.1, 0.2, 0.3, 0.4]})
    planned = [SweepTrial(i, v, spec="x") for i, v in enumerate(sweep.assignments(0))]
    first, _, _ = _search(tmp_path, sweep, planned, name="resumed")
    jobs = [first.next_job() for _ in range(4)]
    first.job_done(jobs[0], ("complete", 0.5))
    first.job_done(jobs[3], ("complete", 0.1))
    recorded = {0: (json.dumps(planned[0].values), 0.5), 1: (json.dumps(planned[1].values), 0.4)}
    second, study, _ = _search(tmp_path, sweep, planned, recorded=recorded, name="resumed")
    assert second.done == {0, 1} and second.total == 2
    rerun = _drain(second, lambda t: 0.2)
    assert [t.index for t in rerun] == [2, 3]
    states = [(t.user_attrs["fuseflow_index"], t.state.name) for t in sorted(study.trials, key=lambda t: t.number)]
    assert states == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "FAIL"), (3, "COMPLETE"), (2, "COMPLETE"), (3, "COMPLETE")]


def test_a_reopened_model_based_search_never_reuses_an_index(tmp_path):
    sweep = _sweep(parameters={"lr": {"distribution": "uniform", "low": 0.0, "high": 1.0}}, trials=4, sampler="tpe")
    first, _, _ = _search(tmp_path, sweep, name="again")
    job = first.next_job()
    first.job_done(job, ("fail", None))  # trial-0 failed; nothing is recorded as done in MLflow
    second, _, _ = _search(tmp_path, sweep, name="again")
    assert [t.index for t in _drain(second)] == [1, 2, 3, 4]


def test_the_time_limit_stops_new_trials(tmp_path, monkeypatch):
    import tasks.sweep.search as search_module

    clock = [100.0]
    monkeypatch.setattr(search_module.time, "monotonic", lambda: clock[0])
    sweep = _sweep(parameters={"lr": {"distribution": "uniform", "low": 0.0, "high": 1.0}}, trials=10,
                   sampler="random", timeout=30)
    planned = [SweepTrial(i, v) for i, v in enumerate(sweep.assignments(0))]
    search, _, _ = _search(tmp_path, sweep, planned)
    assert search.next_job() is not None
    clock[0] += 31
    assert search.next_job() is None


def test_the_reporter_prunes_a_trial_worse_than_the_median(tmp_path):
    sweep = _sweep(parameters={"lr": {"distribution": "uniform", "low": 0.0, "high": 1.0}}, trials=5,
                   sampler="random", pruner={"median": {"startup_trials": 2, "warmup_epochs": 1}})
    planned = [SweepTrial(i, v) for i, v in enumerate(sweep.assignments(0))]
    search, _, jobs = _search(tmp_path, sweep, planned)
    for _ in range(2):  # two trials that finish with val_loss 1/epoch
        job = search.next_job()
        for epoch in range(1, 6):
            job.reporter(epoch, {"val_loss": 1.0 / epoch})
        search.job_done(job, ("complete", 0.2))
    bad = search.next_job()
    bad.reporter(1, {"val_loss": 5.0})  # epoch 1 is the warm-up: never pruned
    with pytest.raises(TrialPruned) as pruned, observing(bad.reporter):
        notify(2, {"val_loss": 4.0, "train_loss": 0.1})  # as the training loop's epoch hook calls it
    assert pruned.value.epoch == 2 and "median" in str(pruned.value)
    good = search.next_job()
    for epoch in range(1, 6):
        good.reporter(epoch, {"val_loss": 0.5 / epoch, "val_accuracy": float("nan")})  # never pruned
    import pickle

    copy = pickle.loads(pickle.dumps(good.reporter))  # goes to a cluster worker as is
    assert copy.trial_id == good.reporter.trial_id and copy._trial is None


def test_no_observer_no_effect_and_urls_are_masked(tmp_path):
    notify(1, {"val_loss": 1.0})  # nothing installed: nothing happens
    assert masked_url("postgresql://me:secret@db:5432/mlflow") == "postgresql://me:***@db:5432/mlflow"
    assert study_storage(None, "postgresql+psycopg2://me:pw@db/mlflow", tmp_path) == (
        "postgresql+psycopg2://me:pw@db/mlflow?options=-csearch_path%3Dfuseflow_optuna")
    assert study_storage("sqlite:///x.db", "sqlite:///y.db", tmp_path) == "sqlite:///x.db"
    assert study_storage(None, "http://127.0.0.1:5000", tmp_path) == f"sqlite:///{tmp_path / '.fuseflow/sweeps/optuna.db'}"
