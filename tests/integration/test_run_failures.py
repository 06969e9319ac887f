"""Failure semantics: a failing step marks the MLflow run FAILED and the Prefect flow run Failed; exit 1."""
from __future__ import annotations

import textwrap

import pytest

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
    assert run.info.status == "FAILED"
    assert expected in run.data.tags["fuseflow.error"]
    assert _flow_run_state(run.data.tags["prefect.flow_run_id"]).is_failed()


def test_keyboard_interrupt_marks_run_killed(project_dir, tracking_uri):
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve
    from flows.tracking_run import tracked_run

    write_pipelines(project_dir)
    spec = resolve(load_project("pipelines.yaml"), "iris-tiny").spec
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(spec, None, project_dir):
            raise KeyboardInterrupt
    (run,) = runs_of(tracking_uri)
    assert run.info.status == "KILLED"


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
