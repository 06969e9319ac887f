"""Optuna-driven sweeps end to end on threads: a TPE search and a random search with a median pruner on iris. Pruned
trials stop early (their runs hold fewer epochs), are KILLED and tagged pruned, not failed; the rest train every
epoch; the parent's best is the best finished trial; the study, its plots and the trials table are on the parent;
an interrupted search resumed with `--resume` continues the same study without running a finished trial again."""
from __future__ import annotations

import json

import pytest

from flows.cli import main
from tests.support.helpers import TINY_IRIS, runs_of, write_pipelines

EPOCHS = 8
PRUNED_SWEEP = TINY_IRIS.replace("epochs: 4", f"epochs: {EPOCHS}") + """\
    sweep:
      parameters:
        train.optimizer.lr: {distribution: loguniform, low: 1.0e-5, high: 0.1}
        model.hidden: [[8], [32]]
      SAMPLER
      pruner: {median: {startup_trials: 2, warmup_epochs: 1}}
      trials: 8
      metric: val_loss
      fuse_top: 2
      fuse_method: mean
"""


def _sweep_runs(folder, sampler: str):
    from tests.support.helpers import tracking_uri_env

    path = write_pipelines(folder, PRUNED_SWEEP.replace("SAMPLER", sampler))
    with tracking_uri_env(folder) as uri:
        code = main(["run", "iris-tiny", "--file", str(path)])
        runs = runs_of(uri)
    assert code == 0
    parent = next(r for r in runs if "fuseflow.sweep.metric" in r.data.tags)
    trials = {int(r.data.tags["fuseflow.sweep.trial"]): r for r in runs
              if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    return parent, trials, uri


@pytest.fixture(scope="module", params=["sampler: {tpe: {n_startup_trials: 3}}", "sampler: random"],
                ids=["tpe", "random"])
def pruned(request, prefect_harness, tmp_path_factory):
    return _sweep_runs(tmp_path_factory.mktemp("pruned"), request.param)


def test_some_trials_are_pruned_early_and_the_rest_finish(pruned):
    from mlflow import MlflowClient

    parent, trials, uri = pruned
    client = MlflowClient(uri)
    assert sorted(trials) == list(range(8))
    epochs = {i: len(client.get_metric_history(r.info.run_id, "val_loss")) for i, r in trials.items()}
    states = {i: r.data.tags.get("fuseflow.sweep.trial_state") for i, r in trials.items()}
    pruned_ids = [i for i, s in states.items() if s == "pruned"]
    finished = [i for i, r in trials.items() if r.info.status == "FINISHED"]
    assert pruned_ids and len(finished) >= 2 and sorted(pruned_ids + finished) == list(range(8)), (states, epochs)
    for i in pruned_ids:
        run = trials[i]
        assert run.info.status == "KILLED" and "fuseflow.error" not in run.data.tags
        stopped = int(run.data.tags["fuseflow.sweep.pruned_after_epoch"])
        assert 2 <= stopped < EPOCHS and epochs[i] == stopped  # stopped at once, after the warm-up epoch
        assert "test_accuracy" not in run.data.metrics  # no evaluation, no model: the worker was released
        assert "pruned by the median pruner" in run.data.tags["mlflow.note.content"]
    for i in finished:
        assert epochs[i] == EPOCHS and "test_accuracy" in trials[i].data.metrics
    assert parent.data.metrics["trials_pruned"] == len(pruned_ids)
    assert parent.data.metrics["trials_finished"] == len(finished) and parent.data.metrics["trials_failed"] == 0


def test_the_best_is_the_best_finished_trial(pruned):
    from mlflow import MlflowClient

    from tasks.sweep.report import metric_of_run

    parent, trials, uri = pruned
    client = MlflowClient(uri)
    scores = {i: metric_of_run(client, r, "val_loss") for i, r in trials.items() if r.info.status == "FINISHED"}
    best = min(scores, key=scores.get)
    assert parent.data.tags["fuseflow.sweep.best_trial"] == f"trial-{best}"
    assert parent.data.metrics["best_val_loss"] == pytest.approx(scores[best])
    assert parent.data.params["best.model.hidden"] == trials[best].data.params["model.hidden"]


def test_fuse_top_fuses_the_best_finished_trials_never_a_pruned_one(pruned):
    from mlflow import MlflowClient

    from tasks.sweep.report import metric_of_run

    parent, trials, uri = pruned
    client = MlflowClient(uri)
    scores = {i: metric_of_run(client, r, "val_loss") for i, r in trials.items() if r.info.status == "FINISHED"}
    two_best = sorted(scores, key=scores.get)[:2]
    members = {v for k, v in parent.data.tags.items() if k.startswith("fuseflow.fusion.member.")}
    assert members == {trials[i].info.run_id for i in two_best}
    assert parent.data.tags["fuseflow.sweep.fused_trials"] == ", ".join(f"trial-{i}" for i in two_best)


def test_the_study_holds_every_trial_as_the_runs_do(pruned):
    import optuna

    from tasks.sweep.study import open_storage

    parent, trials, _ = pruned
    tags = parent.data.tags
    assert tags["fuseflow.sweep.pruner"] == "median"
    study = optuna.load_study(study_name=tags["fuseflow.sweep.study"],
                              storage=open_storage(tags["fuseflow.sweep.storage"]))
    states = {t.user_attrs["fuseflow_index"]: t.state.name for t in study.trials}
    assert states == {i: "PRUNED" if r.data.tags.get("fuseflow.sweep.trial_state") == "pruned" else "COMPLETE"
                      for i, r in trials.items()}
    values = {t.user_attrs["fuseflow_index"]: t.user_attrs["values"] for t in study.trials}
    assert values == {i: json.loads(r.data.tags["fuseflow.sweep.values"]) for i, r in trials.items()}
    assert study.best_trial.user_attrs["fuseflow_index"] == int(tags["fuseflow.sweep.best_trial"].split("-")[1])


def test_parent_holds_the_plots_and_a_table_that_says_pruned(pruned, tmp_path):
    import mlflow
    import pandas as pd

    parent, trials, uri = pruned
    folder = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="sweep",
                                                 dst_path=str(tmp_path), tracking_uri=uri)
    for plot in ("optimization_history", "parallel_coordinates", "param_importances", "intermediate_values"):
        assert open(f"{folder}/{plot}.png", "rb").read()[:4] == b"\x89PNG"
    table = pd.read_csv(f"{folder}/trials.csv").set_index("trial")
    for i, run in trials.items():
        pruned_run = run.data.tags.get("fuseflow.sweep.trial_state") == "pruned"
        assert table.loc[i, "status"] == ("PRUNED" if pruned_run else "FINISHED")
        assert pd.isna(table.loc[i, "rank"]) == pruned_run


def test_the_trials_table_is_a_prefect_artifact(pruned, prefect_harness):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    parent, trials, _ = pruned

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sweep-trials"])),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[parent.data.tags["prefect.flow_run_id"]])))

    artifacts = asyncio.run(read())
    assert len(artifacts) == 1 and artifacts[0].type == "table"
    rows = json.loads(artifacts[0].data) if isinstance(artifacts[0].data, str) else artifacts[0].data
    assert sorted(row["trial"] for row in rows) == sorted(trials)


def test_an_interrupted_search_resumes_the_same_study(prefect_harness, tmp_path, monkeypatch):
    """The sweep dies while telling the study about its third trial (that trial's run FINISHED): `--resume` reopens
    the parent run and its study, counts the three trials, and runs only the other three."""
    import optuna

    from tasks.sweep.search import SweepSearch
    from tasks.sweep.study import open_storage
    from tests.support.helpers import tracking_uri_env

    real_done = SweepSearch.job_done
    told = []

    def dies_on_the_third(self, job, outcome):
        told.append(job.key)
        if len(told) == 3:
            raise RuntimeError("the machine went down")
        return real_done(self, job, outcome)

    path = write_pipelines(tmp_path, PRUNED_SWEEP.replace("SAMPLER", "sampler: {tpe: {n_startup_trials: 2}}")
                           .replace("      fuse_top: 2\n      fuse_method: mean\n", "")
                           .replace("trials: 8", "trials: 6").replace(f"epochs: {EPOCHS}", "epochs: 3")
                           .replace("pruner: {median: {startup_trials: 2, warmup_epochs: 1}}",
                                    "pruner: none\n      max_concurrent: 1"))
    with tracking_uri_env(tmp_path) as uri:
        monkeypatch.setattr(SweepSearch, "job_done", dies_on_the_third)
        assert main(["run", "iris-tiny", "--file", str(path)]) == 1
        first = runs_of(uri)
        monkeypatch.setattr(SweepSearch, "job_done", real_done)
        assert main(["run", "iris-tiny", "--file", str(path), "--resume"]) == 0
        second = runs_of(uri)
    parent = next(r for r in second if "fuseflow.sweep.metric" in r.data.tags)
    assert [r.info.run_id for r in first if "fuseflow.sweep.metric" in r.data.tags] == [parent.info.run_id]
    assert len([r for r in first if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]) == 3
    trials = [r for r in second if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    indices = sorted(int(r.data.tags["fuseflow.sweep.trial"]) for r in trials)
    assert indices == list(range(6)), indices  # no trial ran twice
    assert {r.info.status for r in trials} == {"FINISHED"} and parent.info.status == "FINISHED"
    study = optuna.load_study(study_name=parent.data.tags["fuseflow.sweep.study"],
                              storage=open_storage(parent.data.tags["fuseflow.sweep.storage"]))
    assert sorted(t.user_attrs["fuseflow_index"] for t in study.trials) == list(range(6))
    assert {t.state.name for t in study.trials} == {"COMPLETE"}


def test_a_misspelt_sampler_stops_the_run_before_any_run_is_created(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_pipelines(tmp_path, PRUNED_SWEEP.replace("SAMPLER", "sampler: tpee"))
    assert main(["run", "iris-tiny", "--file", str(path)]) == 2
    assert "did you mean 'tpe'" in capsys.readouterr().err
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / ".fuseflow" / "sweeps").exists()
