"""Retries and timeouts from pipelines.yaml: a training step that fails once is retried by Prefect and resumes from
its checkpoint into the same MLflow run; a step past its `timeout` fails the run with a message that names it."""
from __future__ import annotations

import sys

import pytest

from tests.support.helpers import write_pipelines

PIPELINE = """\
pipelines:
  flaky-iris:
    seed: 5
    retries: 0
    steps:
      train: {{retries: 2, retry_delay_seconds: 0}}
    {timeout}
    data: {{source: sklearn, name: iris}}
    preprocess: [standardize]
    model: {{type: custom, target: "flakynet:build", params: {{fail_at_batch: {fail_at}, delay: {delay}}}}}
    train:
      backend: torch
      epochs: 6
      batch_size: 16
      optimizer: {{name: adamw, lr: 0.01}}
      early_stopping: {{monitor: val_loss, patience: 50}}
      checkpoint_seconds: 0
"""

FLAKYNET = """\
import os
import time
from pathlib import Path

import torch.nn as nn

MARK = Path(__file__).with_name("failed-once")


class Flaky(nn.Module):
    \"\"\"An MLP that raises once, at training batch `fail_at_batch` (a file marks that it did), and may sleep.\"\"\"

    def __init__(self, in_features, out_features, fail_at_batch, delay):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, 16), nn.ReLU(), nn.Linear(16, out_features))
        self.fail_at_batch, self.delay, self.batches = fail_at_batch, delay, 0

    def forward(self, x):
        if self.training:
            self.batches += 1
            time.sleep(self.delay)
            if self.batches == self.fail_at_batch and not MARK.exists():
                MARK.write_text("1")
                raise ConnectionError("simulated outage in the middle of training")
        return self.net(x)


def build(in_features, out_features, fail_at_batch=0, delay=0.0):
    return Flaky(in_features, out_features, fail_at_batch, delay)
"""


@pytest.fixture
def flaky_project(project_dir, tracking_uri, monkeypatch):
    (project_dir / "flakynet.py").write_text(FLAKYNET, encoding="utf-8")
    monkeypatch.syspath_prepend(str(project_dir))
    sys.modules.pop("flakynet", None)
    yield project_dir
    sys.modules.pop("flakynet", None)


def test_a_training_step_that_fails_once_is_retried_and_resumes_in_the_same_run(prefect_harness, flaky_project,
                                                                               tracking_uri, capsys):
    from mlflow import MlflowClient

    from flows.cli import main
    from tests.support.helpers import runs_of

    # iris: 105 training rows -> 7 batches an epoch; batch 24 is in epoch 4, after three checkpoints
    write_pipelines(flaky_project, PIPELINE.format(fail_at=24, delay=0.0, timeout=""))
    assert main(["run", "flaky-iris", "--no-cache"]) == 0, capsys.readouterr().err
    assert (flaky_project / "failed-once").exists()  # it did fail once
    runs = runs_of(tracking_uri)
    assert len(runs) == 1  # the retry continued the same MLflow run
    run = runs[0]
    assert run.info.status == "FINISHED"
    client = MlflowClient(tracking_uri)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
    assert sorted(steps) == list(range(1, 7))  # every epoch once: resumed from the checkpoint, none twice
    assert "test_accuracy" in run.data.metrics


def test_a_step_past_its_timeout_fails_the_run_naming_the_step_and_the_key(prefect_harness, flaky_project,
                                                                          tracking_uri, capsys):
    from flows.cli import main
    from tests.support.helpers import runs_of

    text = PIPELINE.format(fail_at=0, delay=0.2, timeout="").replace(
        "train: {retries: 2, retry_delay_seconds: 0}", "train: {timeout: 2}")
    write_pipelines(flaky_project, text)
    assert main(["run", "flaky-iris", "--no-cache"]) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "step 'train' ran past its timeout of 2 s" in line and "`steps.train.timeout`" in line, err
    (run,) = runs_of(tracking_uri)
    assert run.info.status == "FAILED"
    assert "timeout" in run.data.tags["fuseflow.error"]


@pytest.mark.parametrize("text,fragment", [
    ("retries: -1", "retries: Input should be greater than or equal to 0"),
    ("retries: 500", "retries: Input should be less than or equal to 20"),
    ("timeout: soon", "timeout: invalid timeout 'soon' (expected seconds or a duration such as '90s', '30m', '2h')"),
    ("timeout: 0", "timeout: timeout must be positive"),
    ("steps: {trian: {retries: 1}}", "did you mean 'train'"),
    ("steps: {train: {retrys: 1}}", "retrys"),
    ("steps: {train: {timeout: true}}", "steps.train.timeout: expected a number, got `true` (a boolean)"),
])
def test_bad_retry_keys_exit_2_with_a_located_line(project_dir, tracking_uri, capsys, text, fragment):
    from flows.cli import main

    write_pipelines(project_dir, f"pipelines:\n  p:\n    {text}\n    data: {{source: sklearn, name: iris}}\n"
                                 "    model: {type: mlp}\n    train: {backend: torch, epochs: 1}\n")
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "pipelines.yaml:3" in err, err


def test_the_policy_maps_onto_prefect_task_options():
    from tasks.pipeline.retries import RetryPolicy, StepOptions

    policy = RetryPolicy(retries=1, retry_delay_seconds=5, timeout=60,
                         steps={"train": StepOptions(retries=3, timeout="2h"), "load-data": StepOptions(retries=0)})
    assert policy.for_step("train") == {"retries": 3, "retry_delay_seconds": [5, 10, 20], "timeout_seconds": 7200}
    assert policy.for_step("evaluate") == {"retries": 1, "retry_delay_seconds": [5], "timeout_seconds": 60}
    assert policy.for_step("load-data") == {"timeout_seconds": 60}
    assert RetryPolicy().for_step("train") == {}
