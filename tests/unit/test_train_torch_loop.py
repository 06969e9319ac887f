"""The torch training loop: determinism, early stopping with restored weights, schedulers, losses."""
from __future__ import annotations

import pytest
import torch

from tasks.models.mlp import MLPConfig
from tasks.train.common import lr_lambda
from tasks.train.backends.torch_loop import TorchTrainConfig, train_torch


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(200, 5, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    return {"train": (X[:150], y[:150]), "validation": (X[150:], y[150:])}


def _train(config: dict, seed: int = 0, task: str = "classification", data=None):
    torch.manual_seed(seed)
    model = MLPConfig(type="mlp", hidden=[16]).build(5, 2 if task == "classification" else 1)
    cfg = TorchTrainConfig(backend="torch", **config)
    return model, train_torch(model, data or _data(), task, cfg, seed, show_progress=False)


def test_same_seed_same_history_other_seed_differs():
    _, a = _train({"epochs": 3})
    _, b = _train({"epochs": 3})
    _, c = _train({"epochs": 3}, seed=1)
    assert a.history == b.history
    assert a.history != c.history


def test_early_stopping_restores_best_weights():
    seen = {}

    def remember(epoch, metrics, state):
        seen[epoch] = {k: v.clone() for k, v in state["model"].items()}

    torch.manual_seed(0)
    model = MLPConfig(type="mlp", hidden=[16]).build(5, 2)
    cfg = TorchTrainConfig(backend="torch", epochs=60, optimizer={"name": "sgd", "lr": 2.0, "momentum": 0.9},
                           early_stopping={"monitor": "val_loss", "patience": 2})
    result = train_torch(model, _data(), "classification", cfg, 0, on_epoch_end=remember, show_progress=False)
    assert result.stopped_early and result.epochs_run < 60
    assert result.epochs_run - result.best_epoch == 2
    best = min(result.history, key=lambda h: h["val_loss"])
    assert best["epoch"] == result.best_epoch
    for key, value in model.state_dict().items():
        assert torch.equal(value, seen[result.best_epoch][key])


def test_monitor_max_metric_and_unknown_monitor():
    _, result = _train({"epochs": 4, "early_stopping": {"monitor": "val_accuracy", "patience": 10}})
    assert result.best_epoch == max(result.history, key=lambda h: h["val_accuracy"])["epoch"]
    with pytest.raises(ValueError, match="not a metric the torch backend logs each epoch; did you mean .val_accuracy."):  # before training
        _train({"epochs": 2, "early_stopping": {"monitor": "val_acc", "patience": 1}})


def test_mse_loss_on_classes_and_regression():
    _, result = _train({"epochs": 2, "loss": "mse"})
    assert result.history[-1]["val_accuracy"] >= 0
    data = _data()
    reg = {k: (x, x[:, 0] * 2.0) for k, (x, _) in data.items()}
    _, result = _train({"epochs": 15, "loss": "mse", "optimizer": {"name": "adam", "lr": 0.01}}, task="regression", data=reg)
    assert result.history[-1]["val_r2"] > 0.8
    with pytest.raises(ValueError, match="use loss: mse"):
        _train({"epochs": 1, "loss": "cross_entropy"}, task="regression", data=reg)


def test_learning_rate_schedules():
    warm = lr_lambda("linear", 10, 110)
    assert warm(0) == pytest.approx(0.1) and warm(9) == pytest.approx(1.0)
    assert warm(60) == pytest.approx(0.5) and warm(110) == 0.0
    cosine = lr_lambda("cosine", 0, 100)
    assert cosine(0) == 1.0 and cosine(50) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0)
    assert lr_lambda("none", 0, 10)(7) == 1.0
    _, result = _train({"epochs": 3, "scheduler": {"name": "linear", "warmup_steps": 2}, "batch_size": 50})
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_grad_clip_bounds_the_update():
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 2)
    before = model.weight.detach().clone()
    data = {"train": (torch.randn(8, 5) * 1e4, torch.zeros(8, dtype=torch.long)),
            "validation": (torch.randn(4, 5), torch.zeros(4, dtype=torch.long))}
    cfg = TorchTrainConfig(backend="torch", epochs=1, batch_size=8, grad_clip=0.1, optimizer={"name": "sgd", "lr": 1.0})
    train_torch(model, data, "classification", cfg, 0, show_progress=False)
    step = torch.cat([(model.weight - before).flatten(), model.bias.flatten() * 0])
    assert step.norm() <= 0.1 + 1e-5
