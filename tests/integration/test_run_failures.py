"""Failure semantics: a failing step marks the MLflow run FAILED and the Prefect flow run Failed; exit 1."""
from __future__ import annotations

import os
import socket
import textwrap

import pytest

from tasks.processes import process_started
from tests.support.helpers import TINY_IRIS, runs_of, write_pipelines

BROKEN_MODELS = '''
import torch
import torch.nn as nn


class Exploding(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x):
        raise RuntimeError("the model exploded on purpose")


class NaNModel(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.linear(x) * float("nan")


def exploding(in_features, out_features):
    return Exploding(in_features, out_features)


def nan_model(in_features, out_features):
    return NaNModel(in_features, out_features)
'''


@pytest.fixture
def broken_project(project_dir, tracking_uri, monkeypatch):
    (project_dir / "broken_models.py").write_text(textwrap.dedent(BROKEN_MODELS), encoding="utf-8")
    monkeypatch.syspath_prepend(str(project_dir))
    return project_dir


def _flow_run_state(flow_run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


@pytest.mark.parametrize("target,expected", [
    ("broken_models:exploding", "RuntimeError: the model exploded on purpose"),
    ("broken_models:nan_model", "TrainingDiverged: loss became nan at epoch 1, batch 1"),
])
def test_failing_step_marks_runs_failed_and_exits_1(target, expected, prefect_harness, broken_project, tracking_uri, capsys):
    from flows.cli import main

    write_pipelines(broken_project, TINY_IRIS.replace("type: mlp, hidden: [16], activation: relu",
                                                      f"type: custom, target: '{target}'"))
    code = main(["run", "iris-tiny"])
    captured = capsys.readouterr()
    assert code == 1
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], captured.err
    assert "Traceback" not in captured.err.split("error: run failed")[1]
    (run,) = runs_of(tracking_uri)
    # the true state, and how to continue (the team load test saw a failed run's line name neither)
    assert (f"the MLflow run {run.info.run_id} is marked FAILED; once the cause is fixed, "
            "`fuseflow run iris-tiny --resume` continues it") in captured.err
    assert run.info.status == "FAILED"
    assert expected in run.data.tags["fuseflow.error"]
    assert _flow_run_state(run.data.tags["prefect.flow_run_id"]).is_failed()


@pytest.mark.parametrize("store", ["unwritable-sqlite", "refused-server"])
def test_a_store_where_no_run_can_be_created_says_so(store, prefect_harness, project_dir, monkeypatch, capsys):
    """No run could be created at all (a read-only or unwritable store, a server that refuses): the error line says
    `no MLflow run was opened`, never the false 'marked FAILED' the issue saw."""
    from flows.cli import main

    write_pipelines(project_dir)
    (project_dir / "blocker").write_text("a file where the store's folder would go")
    if store == "unwritable-sqlite":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project_dir / 'blocker' / 'mlflow.db'}")
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: connection refused
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert main(["run", "iris-tiny"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "(no MLflow run was opened; traceback in " in err and "marked FAILED" not in err, err


def test_keyboard_interrupt_marks_run_killed(project_dir, tracking_uri):
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve
    from flows.tracking_run import tracked_run

    write_pipelines(project_dir)
    spec = resolve(load_project("pipelines.yaml"), "iris-tiny").spec
    with pytest.raises(KeyboardInterrupt) as raised:
        with tracked_run(spec, None, project_dir):
            raise KeyboardInterrupt
    (run,) = runs_of(tracking_uri)
    assert run.info.status == "KILLED"
    from flows.cli import _run_state

    assert _run_state(raised.value) == (f"the MLflow run {run.info.run_id} is marked KILLED; `fuseflow run iris-tiny "
                                        "--resume` continues it from its last checkpoint")
    # Ctrl-C while the data loads, before the run opens (data is checked first): the CLI said "marked KILLED"
    assert _run_state(KeyboardInterrupt()) == "no MLflow run was opened"


def test_a_store_that_fails_at_the_finished_mark_says_the_run_stays_running(project_dir, tracking_uri, monkeypatch):
    """The tracking server went away after the last output was logged: the error names the run, says it stays
    RUNNING (not 'no MLflow run was opened', which was the message before), and how to --resume it."""
    from mlflow import MlflowClient

    from flows.cli import _run_state
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve
    from flows.tracking_run import tracked_run

    write_pipelines(project_dir)
    spec = resolve(load_project("pipelines.yaml"), "iris-tiny").spec
    real = MlflowClient.set_terminated

    def refuse_finished(self, run_id, status=None, *args, **kwargs):
        if status == "FINISHED":
            raise ConnectionError("IncompleteRead(0 bytes read)")
        return real(self, run_id, status, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_terminated", refuse_finished)
    with pytest.raises(ConnectionError) as raised:
        with tracked_run(spec, None, project_dir):
            pass
    (run,) = runs_of(tracking_uri)
    assert run.info.status == "RUNNING"
    state = _run_state(raised.value)
    assert state.startswith(f"the MLflow run {run.info.run_id} could not be marked FINISHED (ConnectionError: "), state
    assert "it stays RUNNING" in state and "`fuseflow run iris-tiny --resume`" in state


def test_a_run_that_stopped_while_opening_gets_its_params_when_resumed(project_dir, tracking_uri, monkeypatch):
    """The tracking server went away right after the run was created, before its params were logged (seen in the
    team load test): `--resume` reopened the run and skipped its params and pipeline.yaml, so a FINISHED run lacked
    them. A resumed run now logs what it lacks, and keeps what it has."""
    from mlflow import MlflowClient

    from flows.spec.project import load_project
    from flows.spec.resolve import resolve
    from flows.tracking_run import tracked_run

    write_pipelines(project_dir)
    spec = resolve(load_project("pipelines.yaml"), "iris-tiny").spec
    spec = spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"run_name": "first"})})
    real = MlflowClient.log_batch
    calls = []

    def fail_second_param_batch(self, run_id, metrics=(), params=(), tags=(), *args, **kwargs):
        if params:
            calls.append(len(params))
            if len(calls) == 2:
                raise ConnectionError("the tracking server went away")
        return real(self, run_id, metrics, params, tags, *args, **kwargs)

    monkeypatch.setattr("tasks.tracking.logger.MAX_PARAMS_PER_BATCH", 5)  # several batches: the second one fails
    monkeypatch.setattr(MlflowClient, "log_batch", fail_second_param_batch)
    with pytest.raises(ConnectionError):
        with tracked_run(spec, {"train.epochs": 2}, project_dir):
            pass
    (run,) = runs_of(tracking_uri)
    assert run.info.status == "FAILED" and len(run.data.params) == 5
    client = MlflowClient(tracking_uri)
    assert "pipeline.yaml" not in {f.path for f in client.list_artifacts(run.info.run_id)}
    monkeypatch.setattr(MlflowClient, "log_batch", real)
    with tracked_run(spec, {"train.epochs": 2}, project_dir, resume=True) as logger:
        assert logger.run_id == run.info.run_id
    (resumed,) = runs_of(tracking_uri)
    assert resumed.info.status == "FINISHED"
    params = resumed.data.params
    assert params["data.name"] == "iris" and params["train.epochs"] == "4", params
    assert params["override.train.epochs"] == "2" and params["tracking.run_name"] == "first"
    assert "pipeline.yaml" in {f.path for f in client.list_artifacts(run.info.run_id)}
    # a later resume keeps the params the run has: MLflow refuses a param logged again with another value, and
    # `tracking.run_name` is logged but not in the config hash that finds the run to resume
    client.set_terminated(run.info.run_id, "FAILED")
    renamed = spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"run_name": "renamed"})})
    with tracked_run(renamed, {"train.epochs": 2}, project_dir, resume=True) as logger:
        assert logger.run_id == run.info.run_id
    assert runs_of(tracking_uri)[0].data.params == params


def test_a_run_created_twice_by_a_retried_request_leaves_no_copy_running(project_dir, tracking_uri, monkeypatch):
    """MLflow's HTTP client retries any request whose answer was lost (a tracking server restarted mid-request), so
    one create_run can make two runs; the copy nobody held stayed RUNNING for ever. It is now closed and deleted."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from flows.spec.project import load_project
    from flows.spec.resolve import resolve
    from flows.tracking_run import tracked_run
    from tasks.tracking import tags

    write_pipelines(project_dir)
    spec = resolve(load_project("pipelines.yaml"), "iris-tiny").spec
    real = MlflowClient.create_run

    def answer_lost_then_retried(self, *args, **kwargs):
        real(self, *args, **kwargs)  # the server made it; its answer never came back
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "create_run", answer_lost_then_retried)
    client = MlflowClient(tracking_uri)
    with tracked_run(spec, None, project_dir) as logger:
        held = logger.run_id
        opened = client.get_run(held)
        # a slow original that commits after the retry's answer: found when the run ends
        late = real(client, opened.info.experiment_id, tags={tags.OPEN_TOKEN: opened.data.tags[tags.OPEN_TOKEN]})
    (run,) = runs_of(tracking_uri)
    assert run.info.run_id == held and run.info.status == "FINISHED"
    every = client.search_runs([run.info.experiment_id], run_view_type=ViewType.ALL)
    copies = [r for r in every if r.info.run_id != held]
    assert len(copies) == 2 and late.info.run_id in {c.info.run_id for c in copies}
    for copy in copies:
        assert copy.info.lifecycle_stage == "deleted" and copy.info.status == "FAILED"
        assert copy.data.tags[tags.OPEN_TOKEN] == run.data.tags[tags.OPEN_TOKEN]
        assert copy.data.tags[tags.ERROR] == f"a copy of run {held}, made by a retried request; deleted"


def test_a_running_run_whose_pid_went_to_another_process_is_resumable(project_dir, tracking_uri):
    """--resume told a crash from a live run by the pid alone: a run whose pid the system handed to another live
    process could never be resumed. The process' start time is recorded and compared now."""
    from mlflow import MlflowClient

    from flows.resume import find_resumable_run, is_alive
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve
    from flows.tracking_run import config_hash
    from tasks.tracking import tags

    write_pipelines(project_dir)
    spec = resolve(load_project("pipelines.yaml"), "iris-tiny").spec
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("reused-pid")
    parent = os.getppid()  # alive, and not this process
    started = process_started(parent)
    run_tags = {tags.PIPELINE: spec.name, tags.CONFIG_HASH: config_hash(spec), tags.HOST: socket.gethostname(),
                tags.PID: str(parent)}
    live = client.create_run(experiment, tags={**run_tags, tags.PROCESS_STARTED: repr(started)})
    assert is_alive(client.get_run(live.info.run_id))
    assert find_resumable_run(client, experiment, spec.name, config_hash(spec)) is None
    # the run's process died and the system gave its pid to the live process above, which started at another time
    client.set_tag(live.info.run_id, tags.PROCESS_STARTED, repr(started - 3600.0))
    assert not is_alive(client.get_run(live.info.run_id))
    assert find_resumable_run(client, experiment, spec.name, config_hash(spec)).info.run_id == live.info.run_id


def test_nan_input_stops_training_at_once():
    import torch

    from tasks.models.mlp import MLPConfig
    from tasks.train.backends.torch_loop import TorchTrainConfig, TrainingDiverged, train_torch

    X = torch.randn(32, 4)
    X[3, 1] = float("inf")
    data = {"train": (X, torch.randint(0, 2, (32,))), "validation": (torch.randn(8, 4), torch.randint(0, 2, (8,)))}
    config = TorchTrainConfig(backend="torch", epochs=5, batch_size=64)
    with pytest.raises(TrainingDiverged, match="epoch 1, batch 1: lower train.optimizer.lr"):
        train_torch(MLPConfig(type="mlp", hidden=[4]).build(4, 2), data, "classification", config, 0, show_progress=False)
