"""`train.distributed`: the torch step under torchrun with DDP (gloo, 2 CPU processes), rank 0 alone logging."""
from __future__ import annotations

import json
import textwrap
import time

import pytest

from tests.support.helpers import TINY_IRIS, assert_config_error, iris_predictions, runs_of, tracking_uri_env, write_pipelines

EPOCHS = 3
DDP_IRIS = TINY_IRIS.replace("      epochs: 4\n", f"      epochs: {EPOCHS}\n      distributed: {{nproc_per_node: 2, backend: gloo}}\n")

RANK_MODELS = '''
import os

import torch.nn as nn


class FailsOnRankOne(nn.Module):
    """Trains normally on rank 0; rank 1 raises in its second training batch (after one synchronised step)."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.calls = 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == 2 and os.environ.get("RANK") == "1":
                raise RuntimeError("rank one broke on purpose")
        return self.linear(x)


def fails_on_rank_one(in_features, out_features):
    return FailsOnRankOne(in_features, out_features)
'''


def _run_cli(capsys, *argv: str) -> tuple[int, str]:
    from flows.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err + captured.out


# ---------------------------------------------------------------- config errors (no process is started)

@pytest.mark.parametrize("distributed,fragments", [
    ("{nproc_per_node: 0}", ["pipelines.yaml:13:", "train.distributed.nproc_per_node",
                             "nproc_per_node must be at least 1", "got 0"]),
    ("{nproc_per_nod: 2}", ["train.distributed.nproc_per_nod", "did you mean 'nproc_per_node'"]),
    ("{nproc_per_node: 2, backend: mpi}", ["train.distributed.backend", "'gloo'", "'nccl'"]),
    ("{backend: gloo}", ["train.distributed.nproc_per_node", "missing"]),
])
def test_bad_distributed_section_exits_2(distributed, fragments, project_dir, tracking_uri, capsys):
    write_pipelines(project_dir, DDP_IRIS.replace("{nproc_per_node: 2, backend: gloo}", distributed))
    code, output = _run_cli(capsys, "run", "iris-tiny")
    assert_config_error(code, output, fragments, tracking_uri)


@pytest.mark.parametrize("backend", ["torch", "hf_trainer"])
def test_nccl_on_cpu_device_is_a_config_error_for_both_backends(backend):
    from pydantic import ValidationError

    from tasks.registry import TRAINERS

    config_class = TRAINERS.get(backend)
    with pytest.raises(ValidationError, match="'nccl' needs CUDA GPUs but train.device is 'cpu'.*backend: gloo"):
        config_class(backend=backend, device="cpu", distributed={"nproc_per_node": 2, "backend": "nccl"})
    config = config_class(backend=backend, distributed={"nproc_per_node": 1})
    assert config.distributed.nproc_per_node == 1 and config.distributed.backend is None


def test_backend_resolution_on_this_machine():
    import torch

    from tasks.train.ddp.launcher import DistributedConfig, DistributedTrainingError, resolve_backend

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert resolve_backend(DistributedConfig(nproc_per_node=2, backend="gloo")) == "gloo"
    assert resolve_backend(DistributedConfig(nproc_per_node=1)) == ("nccl" if gpus else "gloo")
    assert resolve_backend(DistributedConfig(nproc_per_node=1), device="cpu") == "gloo"
    if not gpus:
        with pytest.raises(DistributedTrainingError, match="needs CUDA GPUs.*use backend: gloo"):
            resolve_backend(DistributedConfig(nproc_per_node=2, backend="nccl"))
    else:
        with pytest.raises(DistributedTrainingError, match="one GPU per process"):
            resolve_backend(DistributedConfig(nproc_per_node=gpus + 1, backend="nccl"))


# ---------------------------------------------------------------- launcher pieces

def test_equal_weights_check_passes_equal_digests_and_fails_loudly_otherwise():
    import torch

    from tasks.cache.fingerprint import weights_digest
    from tasks.train.ddp.launcher import DistributedTrainingError, check_equal_weights

    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    same = weights_digest(a)
    assert weights_digest(b) == same and len(same) == 64
    assert check_equal_weights({0: same, 1: weights_digest(b)}, 2) == same
    with torch.no_grad():
        b.bias[0] += 1e-6  # one parameter, barely moved
    with pytest.raises(DistributedTrainingError, match=r"differ between ranks: rank\(s\) 1 disagree with rank 0"):
        check_equal_weights({0: same, 1: weights_digest(b)}, 2)
    with pytest.raises(DistributedTrainingError, match=r"rank\(s\) 2 wrote no digest"):
        check_equal_weights({0: same, 1: same}, 3)


def test_failure_message_names_the_first_rank_to_fail(tmp_path):
    from tasks.train.ddp.launcher import failure_of

    (tmp_path / "error-0.json").write_text(json.dumps(
        {"rank": 0, "time": 20.0, "error": "DistBackendError: Connection closed by peer"}))
    (tmp_path / "error-1.json").write_text(json.dumps({"rank": 1, "time": 10.0, "error": "ValueError: bad row"}))
    message = failure_of(tmp_path, 2, 1, ["noise"])
    assert message == "rank 1 of 2 failed: ValueError: bad row (rank(s) 0 failed after it)"
    for path in tmp_path.glob("error-*"):
        path.unlink()
    message = failure_of(tmp_path, 2, -9, ["starting", "torch.distributed.elastic...ChildFailedError: exitcode -9", ""])
    assert "code -9" in message and "ChildFailedError: exitcode -9" in message


def test_samplers_deal_every_row_once_per_epoch_and_change_with_the_epoch():
    import torch

    from tasks.train.ddp.torch_worker import LengthGroupedShards, make_sampler

    X = torch.zeros(11, 2)
    shares = [make_sampler(X, 2, rank, seed=5) for rank in (0, 1)]
    orders = {}
    for epoch in (1, 2):
        rows = []
        for sampler in shares:
            sampler.set_epoch(epoch)
            rows.append(list(sampler))
        assert len(rows[0]) == len(rows[1]) == 6  # equal shares: DDP steps in lockstep
        assert set(rows[0]) | set(rows[1]) == set(range(11))
        orders[epoch] = rows
    assert orders[1] != orders[2]

    class Grouped:
        group_by_length = True

        def __len__(self):
            return 7

        def epoch_order(self, generator):
            return torch.randperm(7, generator=generator)

    grouped = [make_sampler(Grouped(), 2, rank, seed=5) for rank in (0, 1)]
    assert all(isinstance(s, LengthGroupedShards) for s in grouped)
    for s in grouped:
        s.set_epoch(3)
    a, b = (list(s) for s in grouped)
    assert len(a) == len(b) == 4 and set(a) | set(b) == set(range(7))


# ---------------------------------------------------------------- the launcher on tensors (no Prefect)

def _blobs(seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    X = torch.randn(120, 5, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    return {"train": (X[:90], y[:90]), "validation": (X[90:], y[90:])}


def _mlp(seed: int = 0):
    import torch

    from tasks.models.mlp import MLPConfig

    torch.manual_seed(seed)
    return MLPConfig(type="mlp", hidden=[16]).build(5, 2)


def test_early_stopping_agrees_across_ranks_and_restores_the_best_weights():
    from tasks.train.ddp.launcher import train_distributed
    from tasks.train.backends.torch_loop import TorchTrainConfig

    config = TorchTrainConfig(backend="torch", epochs=40, batch_size=16,
                              optimizer={"name": "sgd", "lr": 2.0, "momentum": 0.9},
                              early_stopping={"monitor": "val_loss", "patience": 2},
                              distributed={"nproc_per_node": 2, "backend": "gloo"})
    result = train_distributed(_mlp(), _blobs(), "classification", config, 0)  # raises if the ranks' weights differ
    assert result.stopped_early and result.epochs_run < 40
    assert result.epochs_run - result.best_epoch == 2
    assert [row["epoch"] for row in result.history] == list(range(1, result.epochs_run + 1))
    assert result.best_epoch == min(result.history, key=lambda h: h["val_loss"])["epoch"]


def test_resume_from_a_rank_zero_checkpoint_matches_the_uninterrupted_run(tracking_uri):
    import torch
    from mlflow import MlflowClient

    from tasks.train.checkpoint import Checkpointer, checkpoint_name
    from tasks.cache.fingerprint import weights_digest
    from tasks.train.ddp.launcher import train_distributed
    from tasks.tracking.logger import RunLogger
    from tasks.train.backends.torch_loop import TorchTrainConfig

    config = TorchTrainConfig(backend="torch", epochs=3, batch_size=16, scheduler={"name": "cosine"},
                              distributed={"nproc_per_node": 2, "backend": "gloo"})
    logger = RunLogger(MlflowClient(tracking_uri).create_run("0").info.run_id, tracking_uri)
    checkpoint = Checkpointer(logger, every=1, keep=3)
    full_model = _mlp()
    full = train_distributed(full_model, _blobs(), "classification", config, 0, logger, checkpoint)
    assert checkpoint.saved_epochs() == [1, 2, 3]  # written by rank 0 into the run
    assert sorted(m.step for m in logger.client.get_metric_history(logger.run_id, "val_loss")) == [1, 2, 3]
    state = torch.load(checkpoint.local_folder() / checkpoint_name(2), weights_only=True)

    resumed_model = _mlp(seed=1)  # other initial weights: the checkpoint's must win on every rank
    resumed = train_distributed(resumed_model, _blobs(), "classification", config, 0, resume=state)
    assert resumed.history == full.history
    assert weights_digest(resumed_model) == weights_digest(full_model)


# ---------------------------------------------------------------- a real pipeline run: 2 gloo processes

@pytest.fixture(scope="module")
def ddp_project(tmp_path_factory, prefect_harness):
    """The tiny iris pipeline with `distributed: {nproc_per_node: 2, backend: gloo}`, run once; its wall time."""
    folder = tmp_path_factory.mktemp("ddp-project")
    write_pipelines(folder, DDP_IRIS)
    from flows.pipeline import run_pipeline

    with tracking_uri_env(folder) as uri:
        started = time.perf_counter()
        summary = run_pipeline("iris-tiny", None, str(folder / "pipelines.yaml"))
        summary.wall_s = time.perf_counter() - started  # shown beside the cached rerun's time
        yield folder, uri, summary


def test_one_finished_run_with_world_size_and_backend(ddp_project):
    folder, uri, summary = ddp_project
    (run,) = runs_of(uri)
    assert run.info.run_id == summary.run_id and run.info.status == "FINISHED"
    assert run.data.tags["fuseflow.distributed.world_size"] == "2"
    assert run.data.tags["fuseflow.distributed.backend"] == "gloo"
    assert run.data.params["train.distributed.nproc_per_node"] == "2"
    assert run.data.params["train.distributed.backend"] == "gloo"
    assert run.data.metrics["epochs_run"] == EPOCHS
    assert run.data.metrics["test_accuracy"] > 0.7


def test_rank_zero_logged_each_epoch_metric_once(ddp_project):
    from mlflow import MlflowClient

    folder, uri, summary = ddp_project
    client = MlflowClient(uri)
    for key in ("train_loss", "val_loss", "val_accuracy", "val_f1_macro", "lr"):
        history = client.get_metric_history(summary.run_id, key)
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1)), key  # no rank logged twice


def test_checkpoints_written_by_rank_zero(ddp_project):
    from mlflow import MlflowClient

    folder, uri, summary = ddp_project
    files = {a.path for a in MlflowClient(uri).list_artifacts(summary.run_id, "checkpoints")}
    assert files == {"checkpoints/epoch-0002.pt", "checkpoints/epoch-0003.pt"}  # the newest two of 3


def test_logged_model_loads_and_predicts(ddp_project):
    folder, uri, summary = ddp_project
    pred, y = iris_predictions(uri, summary.model_uri)
    assert pred.shape == (150,) and (pred == y).mean() > 0.7


def test_second_run_reuses_the_cached_distributed_training(ddp_project):
    from mlflow import MlflowClient

    from flows.pipeline import run_pipeline

    folder, uri, summary = ddp_project
    started = time.perf_counter()
    again = run_pipeline("iris-tiny", None, str(folder / "pipelines.yaml"))
    print(f"cached rerun: {time.perf_counter() - started:.1f} s; first (DDP) run: {summary.wall_s:.1f} s")
    run = MlflowClient(uri).get_run(again.run_id)
    assert run.data.tags["fuseflow.cache.train"] == "cached"
    assert run.data.tags["fuseflow.reused_run_id"] == summary.run_id
    assert again.metrics == summary.metrics


def test_a_failing_rank_fails_the_run_with_its_error(prefect_harness, project_dir, tracking_uri, monkeypatch, capsys):
    (project_dir / "rank_models.py").write_text(textwrap.dedent(RANK_MODELS), encoding="utf-8")
    monkeypatch.syspath_prepend(str(project_dir))
    write_pipelines(project_dir, DDP_IRIS.replace("type: mlp, hidden: [16], activation: relu",
                                                  "type: custom, target: 'rank_models:fails_on_rank_one'"))
    code, output = _run_cli(capsys, "run", "iris-tiny")
    expected = "DistributedTrainingError: rank 1 of 2 failed: RuntimeError: rank one broke on purpose"
    assert code == 1
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], output
    (run,) = runs_of(tracking_uri)
    assert run.info.status == "FAILED"
    assert expected in run.data.tags["fuseflow.error"]


@pytest.mark.slow
def test_text_torch_backend_trains_distributed_with_length_grouping(prefect_harness, tmp_path):
    """A tiny BERT with `backend: torch` under DDP (batches grouped by length): one finished run, each epoch once."""
    from mlflow import MlflowClient

    from flows.pipeline import run_pipeline
    from tests.support.text_helpers import spam_project, text_pipelines

    spam_project(tmp_path)
    text = text_pipelines(tmp_path / "spam.csv", tmp_path / "tokenizer", "torch", EPOCHS, name="spam-ddp")
    text = text.replace("      batch_size: 16\n", "      batch_size: 16\n      distributed: {nproc_per_node: 2}\n")
    text = text.replace("tokenize: {max_length: 16}", "tokenize: {max_length: 16, group_by_length: true}")
    (tmp_path / "pipelines.yaml").write_text(text, encoding="utf-8")
    with tracking_uri_env(tmp_path) as uri:
        summary = run_pipeline("spam-ddp", None, str(tmp_path / "pipelines.yaml"))
    client = MlflowClient(uri)
    run = client.get_run(summary.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["fuseflow.distributed.world_size"] == "2"
    assert sorted(m.step for m in client.get_metric_history(summary.run_id, "val_loss")) == [1, 2, 3]
    assert "test_accuracy" in run.data.metrics
