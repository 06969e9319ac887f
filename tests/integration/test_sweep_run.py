"""A sweep run end to end on threads (the default runner): nested trial runs, the parent's trials table, plot and
best parameters — checked against the trial runs themselves — and `fuse_top` fusing the best trials."""
from __future__ import annotations

import json

import pytest

from flows.cli import main
from tests.support.helpers import TINY_IRIS, runs_of, write_pipelines

SWEEP_FUSE = TINY_IRIS + """\
    sweep:
      parameters:
        train.optimizer.lr: [0.005, 0.05]
        model.hidden: [[8], [32]]
      metric: val_loss
      max_concurrent: 2
      fuse_top: 2
      fuse_method: greedy
"""


@pytest.fixture(scope="module")
def swept(prefect_harness, tmp_path_factory):
    """`fuseflow run iris-tiny` of a 4-trial grid with fuse_top: 2, once for the module."""
    from tests.support.helpers import tracking_uri_env

    folder = tmp_path_factory.mktemp("sweep")
    path = write_pipelines(folder, SWEEP_FUSE)
    with tracking_uri_env(folder) as uri:
        code = main(["run", "iris-tiny", "--file", str(path)])
        runs = runs_of(uri)
    assert code == 0
    locks = folder / ".fuseflow" / "cache" / "locks"
    assert locks.is_dir() and list(locks.glob("*.lock")) == []  # the trials took cache locks and released them
    parent = next(r for r in runs if "fuseflow.sweep.metric" in r.data.tags)
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.data.tags["fuseflow.sweep.search"] == "grid" and parent.data.tags["fuseflow.sweep.pruner"] == "none"
    return parent, trials, uri


def test_every_trial_is_a_finished_nested_run_with_its_values(swept):
    parent, trials, _ = swept
    assert len(trials) == 4 and {r.info.status for r in trials} == {"FINISHED"}
    assert parent.data.metrics["timing/load-data_s"] > 0  # its data checked before the parent run opened
    values = sorted((float(r.data.params["train.optimizer.lr"]), r.data.params["model.hidden"]) for r in trials)
    assert values == [(0.005, "[32]"), (0.005, "[8]"), (0.05, "[32]"), (0.05, "[8]")]
    for trial in trials:
        assert json.loads(trial.data.tags["fuseflow.sweep.values"])["train.optimizer.lr"] == float(
            trial.data.params["train.optimizer.lr"])
        assert trial.data.tags["fuseflow.pipeline"] == "iris-tiny"


def test_parent_names_the_best_trial_as_the_trials_runs_rank_it(swept):
    from mlflow import MlflowClient

    from tasks.sweep.report import metric_of_run

    parent, trials, uri = swept
    client = MlflowClient(uri)
    scores = {r.info.run_id: metric_of_run(client, r, "val_loss") for r in trials}
    best_id = min(scores, key=scores.get)  # val_loss: lower is better
    best = next(r for r in trials if r.info.run_id == best_id)
    assert parent.data.tags["fuseflow.sweep.best_run_id"] == best_id
    assert parent.data.metrics["best_val_loss"] == pytest.approx(scores[best_id])
    assert parent.data.params["best.train.optimizer.lr"] == best.data.params["train.optimizer.lr"]
    assert parent.data.params["best.model.hidden"] == best.data.params["model.hidden"]
    assert parent.data.metrics["trials_finished"] == 4 and parent.data.metrics["trials_failed"] == 0


def test_parent_holds_the_trials_table_plot_and_report(swept, tmp_path):
    import mlflow
    import pandas as pd

    parent, trials, uri = swept
    folder = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="sweep",
                                                 dst_path=str(tmp_path), tracking_uri=uri)
    table = pd.read_csv(f"{folder}/trials.csv")
    assert len(table) == 4 and set(table["status"]) == {"FINISHED"}
    assert sorted(table["rank"]) == [1, 2, 3, 4]
    top = table.sort_values("rank").iloc[0]
    assert top["run_id"] == parent.data.tags["fuseflow.sweep.best_run_id"]
    assert top["val_loss"] == pytest.approx(parent.data.metrics["best_val_loss"])
    for plot in ("optimization_history", "parallel_coordinates", "param_importances"):  # Optuna's, of the study
        png = open(f"{folder}/{plot}.png", "rb").read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    import os

    assert not os.path.exists(f"{folder}/intermediate_values.png")  # no pruner: trials report no epochs
    logged = json.load(open(f"{folder}/trials.json"))  # the MLflow table (the UI's table view, mlflow.load_table)
    logged = pd.DataFrame(logged["data"], columns=logged["columns"])
    assert sorted(logged["rank"]) == [1, 2, 3, 4] and set(logged["status"]) == {"FINISHED"}
    report = json.load(open(f"{folder}/sweep_report.json"))
    assert report["metric"] == "val_loss" and report["mode"] == "min" and len(report["ranking"]) == 4
    assert "ranked by `val_loss` (min)" in parent.data.tags["mlflow.note.content"]


def test_fuse_top_fuses_the_two_best_trials_and_compares_with_the_best(swept, tmp_path):
    import mlflow
    from sklearn.datasets import load_iris

    parent, trials, uri = swept
    ranking = json.load(open(mlflow.artifacts.download_artifacts(
        run_id=parent.info.run_id, artifact_path="sweep/sweep_report.json", dst_path=str(tmp_path),
        tracking_uri=uri)))["ranking"]
    by_index = {int(r.data.tags["fuseflow.sweep.trial"]): r.info.run_id for r in trials}
    members = {k.rsplit(".", 2)[-2]: v for k, v in parent.data.tags.items() if k.startswith("fuseflow.fusion.member.")}
    assert members == {f"trial-{i}": by_index[i] for i in ranking[:2]}
    assert parent.data.tags["fuseflow.fusion.method"] == "greedy"
    report = json.load(open(mlflow.artifacts.download_artifacts(
        run_id=parent.info.run_id, artifact_path="fusion/fusion_report.json", dst_path=str(tmp_path),
        tracking_uri=uri)))
    assert [m["name"] for m in report["members"]] == [f"trial-{i}" for i in ranking[:2]]
    assert report["shipped"] in ("fused", "best_member")
    assert {"fused", "best_member"} <= set(report) and "accuracy" in report["bootstrap"]
    assert parent.data.metrics["fused_test_accuracy"] == pytest.approx(report["fused"]["test"]["accuracy"])
    assert parent.data.metrics["best_member_test_accuracy"] == pytest.approx(report["best_member"]["test"]["accuracy"])
    note = parent.data.tags["mlflow.note.content"]
    assert "fusion of the 2 best trials" in note
    assert note.startswith("**fuseflow pipeline") and "Prefect flow run:" in note, "the run's summary and links stay"
    assert note.index("ranked by") < note.index("fusion of the 2 best trials"), "sections in the order they ran"
    # the model is a LoggedModel: MLflow resolves it in the global tracking store, whatever `tracking_uri` says
    mlflow.set_tracking_uri(uri)
    local = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="model",
                                                dst_path=str(tmp_path / "model"), tracking_uri=uri)
    model = mlflow.pyfunc.load_model(local)
    iris = load_iris(as_frame=True)
    predicted = model.predict(iris.frame.drop(columns="target").head(6))
    assert len(predicted) == 6 and set(predicted["label"]) <= {"setosa", "versicolor", "virginica"}


def test_no_model_is_registered_unless_asked(swept):
    from mlflow import MlflowClient

    _, _, uri = swept
    assert MlflowClient(uri).search_registered_models() == []


def test_cluster_workers_get_the_flows_api_and_a_share_of_the_cores(prefect_harness, monkeypatch):
    """Dask/Ray workers must report to the flow's Prefect API (else each starts a temporary server) and split the
    cores between them (else N workers x all cores oversubscribe the CPU)."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    from flows import task_runners
    from tasks.pipeline.runner import RunnerConfig

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    @flow
    def probe() -> tuple[dict, str]:
        with get_client(sync_client=True) as client:
            return task_runners.worker_env(), str(client.api_url).rstrip("/")

    env, api_url = probe()
    assert env["PREFECT_API_URL"] == api_url and api_url.startswith("http://127.0.0.1")
    monkeypatch.setattr(task_runners, "default_workers", lambda: 8)
    assert task_runners.cluster_env(RunnerConfig(type="dask", workers=2), 4, {})["OMP_NUM_THREADS"] == "4"
    assert task_runners.cluster_env(RunnerConfig(type="ray"), 2, {})["OMP_NUM_THREADS"] == "4"  # 2 jobs: 2 workers
    assert "OMP_NUM_THREADS" not in task_runners.cluster_env(RunnerConfig(type="thread"), 4, {})
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice wins, and reaches Dask's workers (whose default is 1)
    assert task_runners.cluster_env(RunnerConfig(type="dask", workers=2), 4, {})["OMP_NUM_THREADS"] == "3"
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert "OMP_NUM_THREADS" not in task_runners.cluster_env(RunnerConfig(type="dask", address="tcp://h:8786"), 4, {})
    # the local Dask cluster passes the environment to its workers' nannies (over Dask's OMP_NUM_THREADS=1)
    runner = task_runners.build_task_runner(RunnerConfig(type="dask", workers=2), 4, {"OMP_NUM_THREADS": "4"})
    assert runner.cluster_kwargs["env"] == {"OMP_NUM_THREADS": "4"} and runner.cluster_kwargs["n_workers"] == 2


def test_a_trial_lost_before_its_run_opens_is_still_a_failed_nested_run(prefect_harness, tmp_path, monkeypatch):
    import flows.tracking_run
    from tests.support.helpers import tracking_uri_env

    real = flows.tracking_run.tracked_run

    def losing_trial_1(spec, overrides, base_dir, parent_run_id=None, extra_tags=None, resume=False):
        if (extra_tags or {}).get("fuseflow.sweep.trial") == "1":
            raise ConnectionError("worker lost before the trial started")
        return real(spec, overrides, base_dir, parent_run_id=parent_run_id, extra_tags=extra_tags, resume=resume)

    monkeypatch.setattr(flows.tracking_run, "tracked_run", losing_trial_1)
    path = write_pipelines(tmp_path, TINY_IRIS.replace("epochs: 4", "epochs: 2") + """\
    sweep:
      parameters: {train.optimizer.lr: [0.01, 0.02]}
      metric: val_accuracy
""")
    with tracking_uri_env(tmp_path) as uri:
        assert main(["run", "iris-tiny", "--file", str(path)]) == 0
        runs = runs_of(uri)
    parent = next(r for r in runs if "fuseflow.sweep.metric" in r.data.tags)
    trials = {r.data.tags["fuseflow.sweep.trial"]: r for r in runs
              if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert trials["0"].info.status == "FINISHED" and trials["1"].info.status == "FAILED"
    assert "worker lost before the trial started" in trials["1"].data.tags["fuseflow.error"]
    assert trials["1"].data.params == {"train.optimizer.lr": "0.02"}
    assert parent.data.metrics["trials_failed"] == 1 and parent.data.tags["fuseflow.sweep.best_trial"] == "trial-0"


def test_resume_of_an_interrupted_sweep_runs_only_the_unfinished_trials(prefect_harness, tmp_path, monkeypatch):
    """A sweep that dies after its trials (here: while reading them back) keeps them: `--resume` reopens the sweep's
    run, reuses every FINISHED trial with the same values, and runs only the rest."""
    import flows.bodies.sweep
    from tests.support.helpers import tracking_uri_env

    real_collect = flows.bodies.sweep.collect

    def crash(*args, **kwargs):
        raise RuntimeError("the machine went down")

    path = write_pipelines(tmp_path, TINY_IRIS.replace("epochs: 4", "epochs: 2") + """\
    sweep:
      parameters: {train.optimizer.lr: [0.01, 0.02, 0.03]}
      metric: val_accuracy
""")
    with tracking_uri_env(tmp_path) as uri:
        monkeypatch.setattr(flows.bodies.sweep, "collect", crash)
        assert main(["run", "iris-tiny", "--file", str(path)]) == 1
        first = runs_of(uri)
        parent = next(r for r in first if "fuseflow.sweep.metric" in r.data.tags)
        assert parent.info.status == "FAILED" and len(first) == 4
        # one trial was lost with the machine: its run never finished
        lost = next(r for r in first if r.data.tags.get("fuseflow.sweep.trial") == "2")
        from mlflow import MlflowClient

        MlflowClient(uri).set_terminated(lost.info.run_id, "KILLED")
        monkeypatch.setattr(flows.bodies.sweep, "collect", real_collect)
        assert main(["run", "iris-tiny", "--file", str(path), "--resume"]) == 0
        second = runs_of(uri)
    resumed = next(r for r in second if r.info.run_id == parent.info.run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.metrics["trials_finished"] == 3
    trials = [r for r in second if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 4  # trials 0 and 1 kept, trial 2 ran again (its KILLED run stays on record)
    by_trial = {}
    for r in trials:
        by_trial.setdefault(r.data.tags["fuseflow.sweep.trial"], []).append(r.info.status)
    assert by_trial["0"] == ["FINISHED"] and by_trial["1"] == ["FINISHED"]
    assert sorted(by_trial["2"]) == ["FINISHED", "KILLED"]


def test_workers_get_an_absolute_store_and_a_warning_for_an_unreachable_api(monkeypatch, tmp_path):
    from flows import task_runners
    from tasks.pipeline.runner import RunnerConfig

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    env = task_runners.worker_env()
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    remote = RunnerConfig(type="dask", address="tcp://10.0.0.5:8786")
    assert "cannot reach from another machine" in task_runners.loopback_warning(remote, env)
    assert task_runners.loopback_warning(RunnerConfig(type="dask"), env) is None
    assert task_runners.loopback_warning(remote, {"PREFECT_API_URL": "http://prefect.internal:4200/api"}) is None


def test_fuse_top_with_one_finished_trial_ships_that_trial(prefect_harness, tmp_path, monkeypatch):
    from tests.support.helpers import tracking_uri_env

    (tmp_path / "sweep_nets.py").write_text(
        "import torch.nn as nn\n\n\ndef net(in_features, out_features, width=8):\n"
        "    if width < 0:\n        raise ValueError('no negative widths')\n"
        "    return nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, out_features))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = TINY_IRIS.replace("{type: mlp, hidden: [16], activation: relu}", '{type: custom, target: "sweep_nets:net"}')
    path = write_pipelines(tmp_path, text.replace("epochs: 4", "epochs: 2") + """\
    sweep:
      parameters: {model.params.width: [8, -1]}
      metric: val_accuracy
      fuse_top: 2
""")
    with tracking_uri_env(tmp_path) as uri:
        assert main(["run", "iris-tiny", "--file", str(path)]) == 0
        runs = runs_of(uri)
    parent = next(r for r in runs if "fuseflow.sweep.metric" in r.data.tags)
    assert parent.info.status == "FINISHED" and parent.data.tags["fuseflow.sweep.best_trial"] == "trial-0"
    assert parent.data.tags["fuseflow.sweep.fused_trials"].startswith("0 (fewer than 2")
    assert "fuseflow.fusion.method" not in parent.data.tags and "test_accuracy" in parent.data.metrics
