"""A sweep on a real cluster runner against a real Prefect server: `fuseflow run` with `runner: {type: dask,
workers: 2}` (a local Dask cluster started and stopped with the flow) and the same with `type: ray`. One trial fails
on purpose (its model raises when built): it is recorded FAILED and the other three complete."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.support.helpers import IRIS_SEARCH, runs_of, write_pipelines
from tests.support.servers import RUN_TIMEOUT, ROOT, base_env
from tests.support.servers import prefect_server as start_prefect_server

pytestmark = pytest.mark.e2e

MODELS = '''
import torch.nn as nn


def mlp(in_features, out_features, width=8):
    if width < 0:
        raise ValueError(f"width {width}: this trial fails on purpose")
    return nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, out_features))
'''

PROJECT = """\
pipelines:
  iris-sweep:
    seed: 7
    data: {source: sklearn, name: iris}
    preprocess: [{standardize: {}}]
    model: {type: custom, target: "sweep_models:mlp"}
    train: {backend: torch, epochs: 4, batch_size: 16, optimizer: {name: adam, lr: 0.02}}
    sweep:
      parameters:
        model.params.width: [4, 8, 16, -1]
      metric: val_loss
    runner: {type: RUNNER, workers: 2}
"""


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    with start_prefect_server(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


def _run_sweep(runner: str, prefect_server, folder):
    """`fuseflow run iris-sweep` in a child process pointed at the server; returns (parent, trials, uri, output)."""
    api, home = prefect_server
    (folder / "sweep_models.py").write_text(textwrap.dedent(MODELS), encoding="utf-8")
    write_pipelines(folder, PROJECT.replace("RUNNER", runner))
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    env = {**base_env(home), "PREFECT_API_URL": api.url, "MLFLOW_TRACKING_URI": uri,
           "PYTHONPATH": f"{folder}:{ROOT}", "FUSEFLOW_CACHE_DIR": str(folder / "cache")}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run", "iris-sweep"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert not list((folder / "cache" / "locks").glob("*.lock")), "a cache lock was left behind"
    runs = runs_of(uri)
    parent = next(r for r in runs if "fuseflow.sweep.metric" in r.data.tags)
    trials = {int(r.data.tags["fuseflow.sweep.trial"]): r for r in runs
              if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    return parent, trials, uri, output


def _check_sweep(parent, trials, uri, output, api, runner):
    import pandas as pd
    from mlflow import MlflowClient

    from tasks.sweep.report import metric_of_run

    assert sorted(trials) == [0, 1, 2, 3]
    assert {i: r.info.status for i, r in trials.items()} == {0: "FINISHED", 1: "FINISHED", 2: "FINISHED", 3: "FAILED"}
    assert "this trial fails on purpose" in trials[3].data.tags["fuseflow.error"]
    assert parent.info.status == "FINISHED" and parent.data.tags["fuseflow.sweep.runner"] == runner
    client = MlflowClient(uri)
    scores = {i: metric_of_run(client, trials[i], "val_loss") for i in (0, 1, 2)}
    best = min(scores, key=scores.get)
    assert parent.data.tags["fuseflow.sweep.best_trial"] == f"trial-{best}"
    assert parent.data.params["best.model.params.width"] == trials[best].data.params["model.params.width"]
    assert parent.data.metrics["best_val_loss"] == pytest.approx(scores[best])
    assert parent.data.metrics["trials_failed"] == 1
    local = client.download_artifacts(parent.info.run_id, "sweep/trials.csv")
    table = pd.read_csv(local).set_index("trial")
    assert table.loc[3, "status"] == "FAILED" and "fails on purpose" in table.loc[3, "error"]
    assert table.loc[best, "rank"] == 1 and table.loc[[0, 1, 2], "val_loss"].tolist() == pytest.approx(
        [scores[0], scores[1], scores[2]])
    # the workers reported to the flow's Prefect server (not to temporary servers of their own)
    flow_run_id = parent.data.tags["prefect.flow_run_id"]
    task_runs = api.http.post("/task_runs/filter", json={"task_runs": {"name": {"like_": "train-trial-"}}}).json()
    nested = api.http.post("/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [flow_run_id]}}})
    names = {t["name"] for t in task_runs if t["flow_run_id"] in {f["id"] for f in nested.json()}}
    assert names == {f"train-trial-{i}" for i in range(4)}, names


@pytest.mark.parametrize("runner", ["dask", "ray"])
def test_grid_sweep_on_a_local_cluster(runner, prefect_server, tmp_path):
    from tasks.tracking.tags import PID as TAG_PID

    if runner == "ray":
        pytest.importorskip("prefect_ray")
    parent, trials, uri, output = _run_sweep(runner, prefect_server, tmp_path)
    assert f"on {runner} on a local cluster of 2 workers" in output
    # the trials ran in the cluster's worker processes, not in the flow's
    assert parent.data.tags[TAG_PID] not in {r.data.tags[TAG_PID] for r in trials.values()}
    _check_sweep(parent, trials, uri, output, prefect_server[0], runner)


FUSION = PROJECT.split("    sweep:")[0].replace("iris-sweep", "iris-member").replace(
    '{type: custom, target: "sweep_models:mlp"}', "{type: mlp, hidden: [8]}") + """\
  iris-fusion:
    fusion:
      members: [{pipeline: iris-member, name: a}, {pipeline: iris-member, name: b, set: {seed: 8}}]
      method: mean
    runner: {type: dask, workers: 2}
"""


def test_fusion_members_train_on_a_local_dask_cluster(prefect_server, tmp_path):
    api, home = prefect_server
    write_pipelines(tmp_path, FUSION)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {**base_env(home), "PREFECT_API_URL": api.url, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run", "iris-fusion"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "iris-fusion-members: 2 jobs on dask on a local cluster of 2 workers" in done.stdout + done.stderr
    runs = runs_of(uri)
    parent = next(r for r in runs if "fuseflow.fusion.method" in r.data.tags)
    members = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["fuseflow.fusion.member"] for r in members) == ["a", "b"]
    assert {r.info.status for r in members} == {"FINISHED"} and parent.info.status == "FINISHED"
    from tasks.tracking.tags import PID as TAG_PID

    # trained in the cluster's worker processes, not in the flow's
    assert parent.data.tags[TAG_PID] not in {r.data.tags[TAG_PID] for r in members}
    assert "test_accuracy" in parent.data.metrics


PRUNED = IRIS_SEARCH.format(epochs=6, trials=8, startup=4) + "    runner: {type: dask, workers: 2}\n"


def test_tpe_search_with_pruning_on_a_local_dask_cluster(prefect_server, tmp_path):
    """The workers report each epoch to the study from their own processes; a pruned trial stops there and its
    worker takes the next trial."""
    import optuna
    from mlflow import MlflowClient

    from tasks.sweep.study import open_storage
    from tasks.tracking.tags import PID as TAG_PID

    api, home = prefect_server
    write_pipelines(tmp_path, PRUNED)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {**base_env(home), "PREFECT_API_URL": api.url, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run", "iris-search"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "iris-search-trials: 8 jobs on dask on a local cluster of 2 workers" in output
    runs = runs_of(uri)
    parent = next(r for r in runs if "fuseflow.sweep.metric" in r.data.tags)
    trials = {int(r.data.tags["fuseflow.sweep.trial"]): r for r in runs
              if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(trials) == list(range(8)) and parent.info.status == "FINISHED"
    assert parent.data.tags[TAG_PID] not in {r.data.tags[TAG_PID] for r in trials.values()}  # in the workers
    client = MlflowClient(uri)
    pruned = {i for i, r in trials.items() if r.data.tags.get("fuseflow.sweep.trial_state") == "pruned"}
    assert pruned, {i: r.info.status for i, r in trials.items()}
    for i, run in trials.items():
        epochs = len(client.get_metric_history(run.info.run_id, "val_loss"))
        if i in pruned:
            assert run.info.status == "KILLED" and epochs == int(run.data.tags["fuseflow.sweep.pruned_after_epoch"]) < 6
        else:
            assert run.info.status == "FINISHED" and epochs == 6
    study = optuna.load_study(study_name=parent.data.tags["fuseflow.sweep.study"],
                              storage=open_storage(parent.data.tags["fuseflow.sweep.storage"]))
    assert {t.user_attrs["fuseflow_index"]: t.state.name for t in study.trials} == {
        i: "PRUNED" if i in pruned else "COMPLETE" for i in trials}
    assert parent.data.metrics["trials_pruned"] == len(pruned)
