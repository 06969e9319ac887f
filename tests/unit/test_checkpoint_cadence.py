"""Checkpoints at a cadence in seconds: epochs due sooner are skipped, the last epoch is always written."""
from __future__ import annotations

import pytest


@pytest.fixture
def logger(tracking_uri):
    from mlflow import MlflowClient

    from tasks.tracking.logger import RunLogger

    client = MlflowClient(tracking_uri)
    run = client.create_run(client.create_experiment("cadence"))
    return RunLogger(run.info.run_id, tracking_uri)


def test_epochs_due_sooner_than_min_seconds_are_skipped_and_the_last_one_is_written(logger, monkeypatch):
    import torch

    from tasks.train import checkpoint as module

    clock = iter([0.0, 1.0, 2.0, 31.0, 32.0, 33.0])
    monkeypatch.setattr("time.monotonic", lambda: next(clock))
    saver = module.Checkpointer(logger, every=1, min_seconds=30)
    for epoch in range(1, 7):
        saver(epoch, {"epoch": epoch, "weights": torch.full((2,), float(epoch))})
    saver.wait()
    assert saver.saved_epochs() == [4]  # 30 s after the first epoch; epochs 1-3 and 5 were too soon
    saver.finish()
    assert saver.saved_epochs() == [4, 6]  # the last epoch, when training ends
    assert torch.equal(saver.latest()["weights"], torch.full((2,), 6.0))
    saver.finish()  # nothing pending: no second write
    assert saver.saved_epochs() == [4, 6]


def test_min_seconds_zero_keeps_one_checkpoint_per_due_epoch(logger):
    import torch

    from tasks.train.checkpoint import Checkpointer

    saver = Checkpointer(logger, every=2, keep=5)
    for epoch in range(1, 6):
        saver(epoch, {"epoch": epoch, "weights": torch.zeros(1)})
    saver.finish()
    assert saver.saved_epochs() == [2, 4]


def test_training_writes_the_last_epoch_before_restoring_the_best_weights(logger):
    """A short training (under the cadence) still leaves the final state to resume from, with the last epoch's
    weights, not the restored best ones."""
    import torch

    from tasks.train.backends.torch_loop import TorchTrainConfig, train_torch
    from tasks.train.checkpoint import Checkpointer, epoch_hooks

    config = TorchTrainConfig(backend="torch", epochs=4, batch_size=8, optimizer={"name": "adam", "lr": 0.05},
                              early_stopping={"monitor": "val_loss", "patience": 10, "restore_best": True})
    torch.manual_seed(0)
    X, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    model = torch.nn.Linear(3, 2)
    saver = Checkpointer(logger, every=1, min_seconds=3600)
    on_epoch_end, _ = epoch_hooks(logger, saver)
    train_torch(model, {"train": (X, y), "validation": (X[:10], y[:10])}, "classification", config, 0,
                on_epoch_end=on_epoch_end, show_progress=False)
    assert saver.saved_epochs() == [4]
    state = saver.latest()
    assert state["epoch"] == 4 and len(state["history"]) == 4
    assert state["best_state"] is not None
