"""The flow as a deployment's form calls it: typed hyperparameters (only changed ones apply), the run names they give,
the MLflow run's description, and a config error that fails the flow run with the CLI's message and no traceback."""
from __future__ import annotations

import time

import pytest

from tasks.errors import ConfigError
from tests.support.helpers import write_pipelines

PIPELINE = """\
pipelines:
  iris-form:
    data: {source: sklearn, name: iris}
    model: {type: mlp, hidden: [8]}
    train: {backend: torch, epochs: 2, batch_size: 32, optimizer: {lr: 0.01}}
"""


def _flow_run(flow_run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def test_changed_typed_fields_run_and_name_the_runs(prefect_harness, project_dir, tracking_uri):
    from mlflow import MlflowClient

    from flows.deploy import deployment_parameters
    from flows.pipeline import run_pipeline
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve

    path = write_pipelines(project_dir, PIPELINE)
    spec = resolve(load_project(path), "iris-form").spec
    form = deployment_parameters("iris-form", path, spec)["hyperparameters"]
    form["train"]["epochs"] = 1
    form["train"]["optimizer"]["lr"] = 0.003
    summary = run_pipeline("iris-form", None, str(path), hyperparameters=form)
    run = MlflowClient(tracking_uri).get_run(summary.run_id)
    assert run.data.params["train.epochs"] == "1" and run.data.params["train.optimizer.lr"] == "0.003"
    assert run.data.params["model.hidden"] == "[8]" and run.data.params["train.batch_size"] == "32"
    assert run.info.run_name == "iris-form epochs=1 lr=0.003"
    note = run.data.tags["mlflow.note.content"]
    assert "- `train.epochs` = `1`" in note and "Prefect flow run: [" in note
    assert _flow_run(run.data.tags["prefect.flow_run_id"]).name == "iris-form epochs=1 lr=0.003"
    plain = run_pipeline("iris-form", {"train": {"epochs": 1}}, str(path))  # a nested override, merged
    assert MlflowClient(tracking_uri).get_run(plain.run_id).info.run_name == "iris-form epochs=1"


def test_a_config_error_fails_the_flow_run_with_its_message_and_no_traceback(prefect_harness, project_dir,
                                                                             tracking_uri, caplog):
    import logging

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, LogFilter, LogFilterFlowRunId

    from flows.pipeline import run_pipeline

    path = write_pipelines(project_dir, PIPELINE.replace("iris-form", "iris-broken"))
    caplog.set_level(logging.INFO)
    with pytest.raises(ConfigError, match=r"--set train.optimizer.lr=-1: .*train.optimizer.lr: Input should be "
                                          r"greater than 0") as err:
        run_pipeline("iris-broken", {"train.optimizer.lr": -1}, str(path))
    with get_client(sync_client=True) as client:
        [flow_run] = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["iris-broken"])))
        assert flow_run.state.type.value == "FAILED" and flow_run.state.message == str(err.value)
        text = ""
        for _ in range(60):  # the API log handler sends in batches, in the background: wait for the line
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
            text = "\n".join(log.message for log in logs)
            if "invalid configuration" in text:
                break
            time.sleep(0.5)
    assert f"invalid configuration: {err.value}" in text
    assert "Traceback" not in text and "Traceback" not in caplog.text
