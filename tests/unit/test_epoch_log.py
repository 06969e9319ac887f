"""The epoch progress line (`tasks.train.observers.EpochLog`): its format, which epoch it marks best (the backend's
early-stopping decision, else the headline metric's direction, resumed attempts included), where it goes outside
Prefect, and its place in the epoch hook (written before a pruner stops the trial)."""
from __future__ import annotations

import logging

import pytest

from tasks.train.observers import EpochLog, TrialPruned, duration, epoch_line, number, observing


def test_the_line_holds_epoch_losses_monitor_and_times():
    line = epoch_line(3, 40, {"train_loss": 0.41234, "val_loss": 0.39812, "val_accuracy": 0.9123, "lr": 0.001},
                      "val_accuracy", True, 1.23, 3.84)
    assert line == "epoch 3/40  train_loss 0.4123  val_loss 0.3981  val_accuracy 0.9123 (best)  1.2 s (elapsed 3.8 s)"
    assert epoch_line(1, 2, {"train_loss": 1.0, "val_loss": 2.0}, "val_loss", True, 0.5, 0.5) == \
        "epoch 1/2  train_loss 1  val_loss 2 (best)  0.5 s (elapsed 0.5 s)"  # a loss monitored: marked, not repeated


def test_numbers_and_durations_stay_short():
    assert number(12345.678) == "12345.7" and number(0.000123456) == "0.0001235" and number(float("nan")) == "nan"
    assert (duration(59.94), duration(125), duration(3720)) == ("59.9 s", "2m05s", "1h02m")


def _lines(log: EpochLog, rows: list[dict], best_epochs: list[int]) -> list[str]:
    history = []
    out = []
    for row, best in zip(rows, best_epochs):
        history.append(row)
        out.append(log(row["epoch"], row, {"history": history, "best_epoch": best}))
    return out


def test_a_monitored_metric_is_best_when_the_backend_says_so():
    lines = []
    log = EpochLog(3, "val_f1_macro", sink=lines.append)
    rows = [{"epoch": e, "train_loss": 1.0, "val_loss": 1.0, "val_f1_macro": v}
            for e, v in ((1, 0.5), (2, 0.6), (3, 0.7))]
    _lines(log, rows, [1, 1, 3])  # epoch 2 improved less than min_delta: early stopping did not count it
    assert ["(best)" in line for line in lines] == [True, False, True]
    assert all("val_f1_macro" in line for line in lines)


def test_without_a_monitor_the_headline_metric_is_judged_by_its_direction_across_a_resume():
    lines = []
    log = EpochLog(5, None, sink=lines.append)
    earlier = [{"epoch": 1, "val_loss": 1.0, "val_r2": 0.8}, {"epoch": 2, "val_loss": 1.0, "val_r2": 0.5}]
    history = list(earlier)
    for epoch, r2 in ((3, 0.7), (4, 0.9), (5, 0.85)):  # a resumed attempt: epochs 1-2 ran before it
        row = {"epoch": epoch, "train_loss": 1.0, "val_loss": 1.0, "val_r2": r2}
        history.append(row)
        log(epoch, row, {"history": history, "best_epoch": epoch})
    assert ["(best)" in line for line in lines] == [False, True, False]
    lines.clear()
    mae = EpochLog(2, "val_mae", sink=lines.append)  # lower is better
    mae(1, {"val_mae": 2.0}, {"history": []})
    mae(2, {"val_mae": 1.0}, {"history": []})
    assert ["(best)" in line for line in lines] == [True, True]


def test_outside_a_prefect_run_the_line_goes_to_the_fuseflow_logger(caplog):
    with caplog.at_level(logging.INFO, logger="fuseflow"):
        line = EpochLog(2)(1, {"train_loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.9})
    records = [r for r in caplog.records if r.name == "fuseflow" and r.getMessage() == line]
    assert len(records) == 1 and records[0].levelno == logging.INFO


def test_a_failing_sink_never_stops_training():
    def broken(line: str) -> None:
        raise OSError("pipe closed")

    assert EpochLog(1, sink=broken)(1, {"train_loss": 0.1}).startswith("epoch 1/1")


def test_the_epoch_hook_writes_the_line_before_a_pruner_stops_the_trial():
    from tasks.train.checkpoint import epoch_hooks

    lines = []
    on_epoch_end, _ = epoch_hooks(None, progress=EpochLog(4, sink=lines.append))

    def prune(epoch: int, metrics: dict) -> None:
        raise TrialPruned(epoch, "pruned by the median rule")

    with pytest.raises(TrialPruned), observing(prune):
        on_epoch_end(1, {"train_loss": 0.5, "val_loss": 0.4}, {"epoch": 1, "history": []})
    assert len(lines) == 1 and lines[0].startswith("epoch 1/4  train_loss 0.5  val_loss 0.4")
