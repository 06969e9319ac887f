"""Checkpoints and resume: a SIGKILLed training finishes with `--resume` exactly as an uninterrupted run would,
and a Prefect retry of the training task continues from the last checkpoint."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.helpers import cli_env, write_pipelines

SLOW_PIPELINE = """\
pipelines:
  slow-iris:
    seed: 3
    data: {source: sklearn, name: iris}
    preprocess: [standardize]
    model: {type: custom, target: "slownet:build", params: {hidden: 16, delay: 0.08}}
    train:
      backend: torch
      epochs: 7
      batch_size: 16
      optimizer: {name: adamw, lr: 0.01}
      scheduler: {name: cosine}
      early_stopping: {monitor: val_loss, patience: 50}
      checkpoint_seconds: 0   # a checkpoint every epoch (the default waits 30 s between them)
"""

SLOWNET = """\
import time

import torch.nn as nn


class Slow(nn.Module):
    \"\"\"A small MLP with dropout (so the RNG matters) that sleeps per training batch (so it can be killed).\"\"\"

    def __init__(self, in_features, out_features, hidden, delay):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(0.3),
                                 nn.Linear(hidden, out_features))
        self.delay = delay

    def forward(self, x):
        if self.training:
            time.sleep(self.delay)
        return self.net(x)


def build(in_features, out_features, hidden=16, delay=0.0):
    return Slow(in_features, out_features, hidden, delay)
"""


def _cli(project_dir: Path, *args: str, **popen: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=project_dir, env=cli_env(project_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _run_id(out: str) -> str:
    return out.split("MLflow run id: ")[1].split()[0]


def _test_metrics(uri: str, run_id: str) -> dict[str, float]:
    from mlflow import MlflowClient

    return {k: v for k, v in MlflowClient(uri).get_run(run_id).data.metrics.items() if k.startswith("test_")}


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", ["epoch-0002.pt", "epoch-0007.pt"],
                         ids=["during-training", "after-the-last-epoch"])
def test_sigkill_then_resume_matches_uninterrupted_and_logs_each_epoch_once(kill_after, prefect_harness, project_dir,
                                                                            tracking_uri):
    """Killed mid-training, or after the last epoch (while it evaluates and logs the model): `--resume` finishes
    the same run with each epoch's metrics logged once and the test metrics of an uninterrupted run."""
    from mlflow import MlflowClient

    write_pipelines(project_dir, SLOW_PIPELINE)
    (project_dir / "slownet.py").write_text(SLOWNET)
    client = MlflowClient(tracking_uri)

    proc = _cli(project_dir, "run", "slow-iris")
    deadline = time.monotonic() + 240
    second = None
    while second is None and time.monotonic() < deadline and proc.poll() is None:
        found = list((project_dir / "mlruns").glob(f"**/checkpoints/{kill_after}"))
        second = found[0] if found else None
        time.sleep(0.02)
    assert second is not None, f"no checkpoint {kill_after} appeared"
    time.sleep(0.3)  # let the copy of the checkpoint finish
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    killed_id = second.parent.parent.parent.name
    killed = client.get_run(killed_id)
    assert killed.info.status == "RUNNING"  # SIGKILL: nobody could mark it
    if kill_after == "epoch-0002.pt":
        assert "test_accuracy" not in killed.data.metrics
    else:  # killed while evaluating or logging the model: no model, not finished
        assert killed.info.status == "RUNNING" and killed.data.metrics.get("epochs_run") in (None, 7.0)

    resumed_out = _finish(_cli(project_dir, "run", "slow-iris", "--resume"))
    assert _run_id(resumed_out) == killed_id  # continued in the same MLflow run
    resumed = client.get_run(killed_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["fuseflow.resumed"] == "1"
    for metric in ("val_loss", "train_loss"):  # each epoch once: none lost, none logged twice
        assert sorted(m.step for m in client.get_metric_history(killed_id, metric)) == list(range(1, 8)), metric

    reference_out = _finish(_cli(project_dir, "run", "slow-iris", "--no-cache"))
    reference_id = _run_id(reference_out)
    assert reference_id != killed_id
    assert _test_metrics(tracking_uri, killed_id) == _test_metrics(tracking_uri, reference_id)
    assert len(_test_metrics(tracking_uri, killed_id)) >= 4


def test_prefect_retry_of_training_resumes_from_the_last_checkpoint(prefect_harness, project_dir, tracking_uri,
                                                                     monkeypatch):
    import torch
    from mlflow import MlflowClient
    from prefect import flow
    from prefect.cache_policies import NO_CACHE

    from flows.spec.project import load_project
    from flows.spec.resolve import resolve
    from tasks.steps import tabular as steps
    from tasks.train.checkpoint import Checkpointer
    from tasks.data.tabular import load_tabular
    from tasks.data.scaling import fit_preprocess
    from tasks.tracking.logger import RunLogger

    write_pipelines(project_dir, SLOW_PIPELINE.replace("delay: 0.08", "delay: 0.0"))
    (project_dir / "slownet.py").write_text(SLOWNET)
    monkeypatch.syspath_prepend(str(project_dir))
    sys.modules.pop("slownet", None)
    spec = resolve(load_project("pipelines.yaml"), "slow-iris").spec
    splits, _ = fit_preprocess(spec.preprocess, load_tabular(spec.data, spec.seed, project_dir), "auto")
    run_id = MlflowClient(tracking_uri).create_run("0").info.run_id
    logger = RunLogger(run_id, tracking_uri)

    class CrashOnce(Checkpointer):
        """Saves like a Checkpointer, then fails once right after the second checkpoint."""

        crashed = False

        def __call__(self, epoch: int, state: dict) -> None:
            super().__call__(epoch, state)
            if epoch == 2 and not CrashOnce.crashed:
                CrashOnce.crashed = True
                raise RuntimeError("simulated crash after the second checkpoint")

    checkpoint = CrashOnce(logger)

    @flow(persist_result=False)
    def train_with_retry():
        model = steps.build_model.fn(spec.model, splits.num_features, splits.num_outputs, spec.seed)
        trainer = steps.train.with_options(retries=1, cache_policy=NO_CACHE)
        return trainer(model, splits, spec.train, spec.seed, None, checkpoint=checkpoint)

    model, result = train_with_retry()
    assert CrashOnce.crashed
    assert checkpoint.saved_epochs() == [6, 7]  # the newest two are kept

    fresh = steps.build_model.fn(spec.model, splits.num_features, splits.num_outputs, spec.seed)
    reference, expected = steps.train.fn(fresh, splits, spec.train, spec.seed, None)
    assert [row["epoch"] for row in result.history] == list(range(1, 8))
    assert result.history == expected.history
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
    sys.modules.pop("slownet", None)


@pytest.mark.parametrize("through_api", [False, True])
def test_checkpointer_saves_every_n_epochs_keeps_two_and_skips_a_damaged_one(tracking_uri, monkeypatch, through_api):
    import torch
    from mlflow import MlflowClient

    from tasks.train.checkpoint import Checkpointer
    from tasks.tracking.logger import RunLogger

    logger = RunLogger(MlflowClient(tracking_uri).create_run("0").info.run_id, tracking_uri)
    checkpoint = Checkpointer(logger, every=2)
    if through_api:  # as with a remote artifact store: MLflow's artifact API instead of the local folder
        monkeypatch.setattr(checkpoint, "local_folder", lambda: None)
    for epoch in range(1, 8):
        checkpoint(epoch, {"epoch": epoch, "weights": torch.full((3,), float(epoch))})
    assert checkpoint.saved_epochs() == [4, 6]
    assert torch.equal(checkpoint.latest()["weights"], torch.full((3,), 6.0))
    if not through_api:
        (checkpoint.local_folder() / "epoch-0006.pt").write_bytes(b"not a checkpoint")
        assert checkpoint.latest()["epoch"] == 4
    other_run = MlflowClient(tracking_uri).create_run("0").info.run_id
    assert Checkpointer(RunLogger(other_run, tracking_uri)).latest() is None
