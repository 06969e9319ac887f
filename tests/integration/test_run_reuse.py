"""Unchanged reruns reuse the whole earlier run (metrics, plots, model: nothing trained, evaluated or exported again);
a change of seed, data, code or a package version computes anew, and says which part changed."""
from __future__ import annotations

import importlib
import sys

import pytest

from tests.support.helpers import write_iris_csv, write_pipelines

PIPELINE = """\
pipelines:
  iris-reuse:
    data: {source: csv, path: data/iris.csv, label_column: species}
    preprocess: [standardize]
    model: {type: custom, target: "reusenet.net:build", params: {hidden: 10}}
    train: {backend: torch, epochs: 3, batch_size: 16, optimizer: {name: adam, lr: 0.02}}
"""

NET = """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, in_features, out_features, hidden=8):
        super().__init__()
        self.hidden = nn.Linear(in_features, hidden)
        self.out = nn.Linear(hidden, out_features)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


def build(in_features, out_features, hidden=8):
    return Net(in_features, out_features, hidden)
"""


@pytest.fixture
def project(project_dir, tracking_uri, monkeypatch):
    monkeypatch.delenv("FUSEFLOW_CACHE_DIR", raising=False)
    write_pipelines(project_dir, PIPELINE)
    write_iris_csv(project_dir / "data" / "iris.csv")
    package = project_dir / "reusenet"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "net.py").write_text(NET)
    monkeypatch.syspath_prepend(str(project_dir))
    for name in ("reusenet", "reusenet.net"):
        sys.modules.pop(name, None)
    yield project_dir
    for name in ("reusenet", "reusenet.net"):
        sys.modules.pop(name, None)


def _tags(uri: str, run_id: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return MlflowClient(uri).get_run(run_id).data.tags


def _task_runs() -> list[str]:
    """Names of the task runs of the newest flow run (what the flow ran)."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    async def names() -> list[str]:
        async with get_client() as client:
            newest = await client.read_flow_runs(limit=1, sort=FlowRunSort.START_TIME_DESC)
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[newest[0].id])))
            return sorted(r.name.rsplit("-", 1)[0] for r in runs)

    return asyncio.run(names())


def test_an_unchanged_rerun_reuses_every_output_of_the_earlier_run(prefect_harness, project, tracking_uri):
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from flows.pipeline import run_pipeline

    client = MlflowClient(tracking_uri)
    first = run_pipeline("iris-reuse", None, "pipelines.yaml")
    assert _tags(tracking_uri, first.run_id)["fuseflow.cache.run"] == "computed"
    timings = client.get_run(first.run_id).data.metrics
    assert {"timing/open-run_s", "timing/load-data_s", "timing/train_s", "timing/log-model_s"} <= set(timings)

    again = run_pipeline("iris-reuse", None, "pipelines.yaml")
    assert again.run_id != first.run_id
    tags = _tags(tracking_uri, again.run_id)
    assert tags["fuseflow.cache.run"] == "reused"
    assert tags["fuseflow.reused_run_id"] == first.run_id
    assert tags["fuseflow.cache.run.reason"] == f"same key as MLflow run {first.run_id}"
    assert _task_runs() == ["reuse-run"]  # nothing loaded, trained, evaluated or exported
    run = client.get_run(again.run_id)
    assert run.info.status == "FINISHED"
    assert again.metrics == first.metrics and again.metrics["test_accuracy"] > 0
    own = {k: v for k, v in run.data.metrics.items() if not k.startswith("timing/")}
    assert own == {k: v for k, v in client.get_run(first.run_id).data.metrics.items() if not k.startswith("timing/")}
    assert "timing/reuse_s" in run.data.metrics and "timing/train_s" not in run.data.metrics
    assert [m.step for m in client.get_metric_history(again.run_id, "val_loss")] == [1, 2, 3]
    assert run.data.params == client.get_run(first.run_id).data.params
    assert [d.dataset.digest for d in run.inputs.dataset_inputs] == \
        [d.dataset.digest for d in client.get_run(first.run_id).inputs.dataset_inputs]
    names = {a.path for a in client.list_artifacts(again.run_id)}
    assert {"evaluation", "pipeline.yaml", "timings.json"} <= names and "checkpoints" not in names
    from tasks.tracking.logged_model import model_of_run

    model = model_of_run(client, again.run_id)  # its own LoggedModel, tagged with the run it came from
    assert model.tags["fuseflow.reused_run_id"] == first.run_id
    assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(model.model_id)}
    assert {a.path for a in client.list_artifacts(again.run_id, "evaluation")} == \
        {a.path.replace(first.run_id, again.run_id) for a in client.list_artifacts(first.run_id, "evaluation")}

    # the reused model is the new run's own: it loads from the new run and predicts what the first one does
    frame = pd.read_csv(project / "data" / "iris.csv").head(20)  # raw rows, the label column included (ignored)
    mlflow.set_tracking_uri(tracking_uri)  # runs:/ URIs resolve in the global store, which other tests set
    mine = mlflow.pyfunc.load_model(again.model_uri)
    assert again.model_uri == f"runs:/{again.run_id}/model"
    assert mine.predict(frame).equals(mlflow.pyfunc.load_model(first.model_uri).predict(frame))


@pytest.mark.parametrize("change, part", [
    ("seed", "config (pipeline.seed)"),
    ("data", "data (data.file)"),
    ("code", "code (reusenet.net)"),
    ("version", "versions (torch"),
])
def test_a_change_computes_the_run_again_and_names_it(prefect_harness, project, tracking_uri, monkeypatch,
                                                      change, part):
    from flows.pipeline import run_pipeline

    first = run_pipeline("iris-reuse", None, "pipelines.yaml")
    overrides = None
    if change == "seed":
        overrides = {"seed": 7}
    elif change == "data":
        write_iris_csv(project / "data" / "iris.csv", slice(0, 140))
    elif change == "code":
        (project / "reusenet" / "net.py").write_text(NET.replace("torch.relu", "torch.tanh"))
        importlib.reload(importlib.import_module("reusenet.net"))
    else:
        from tasks.cache import run_key

        versions = dict(run_key.fingerprint_versions())
        monkeypatch.setattr(run_key, "fingerprint_versions", lambda: {**versions, "torch": "9.9.9"})
    second = run_pipeline("iris-reuse", overrides, "pipelines.yaml")
    tags = _tags(tracking_uri, second.run_id)
    assert tags["fuseflow.cache.run"] == "computed"
    assert part in tags["fuseflow.cache.run.reason"]
    assert "fuseflow.reused_run_id" not in tags or change == "version"  # the step cache may still reuse training
    assert second.run_id != first.run_id


def test_no_cache_and_a_deleted_run_compute_again(prefect_harness, project, tracking_uri):
    from mlflow import MlflowClient

    from flows.pipeline import run_pipeline

    first = run_pipeline("iris-reuse", None, "pipelines.yaml")
    fresh = run_pipeline("iris-reuse", None, "pipelines.yaml", no_cache=True)
    assert _tags(tracking_uri, fresh.run_id)["fuseflow.cache.run.reason"] == "--no-cache"
    assert "checkpoints" in {a.path for a in MlflowClient(tracking_uri).list_artifacts(fresh.run_id)}
    client = MlflowClient(tracking_uri)
    client.delete_run(fresh.run_id)
    again = run_pipeline("iris-reuse", None, "pipelines.yaml")
    assert _tags(tracking_uri, again.run_id)["fuseflow.reused_run_id"] == first.run_id  # the newest still there
    client.delete_run(first.run_id)
    client.delete_run(again.run_id)
    last = run_pipeline("iris-reuse", None, "pipelines.yaml")
    assert _tags(tracking_uri, last.run_id)["fuseflow.cache.run"] == "computed"
