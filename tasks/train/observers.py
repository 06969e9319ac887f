"""Who else watches a training step's epochs: an observer installed around a step (a sweep trial's pruning reporter)
gets each epoch's metrics after they are logged, and may stop training by raising `TrialPruned`. Installed per
context (thread or task), so concurrent trials each have their own. `EpochLog` writes the one progress line per
epoch (`epoch 3/40  train_loss 0.412  val_loss 0.398  val_accuracy 0.912 (best)  1.2 s (elapsed 3.8 s)`) into the
Prefect run's logs, where the training step's epoch hook (`tasks.train.checkpoint.epoch_hooks`) calls it."""
from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Mapping, Optional

EpochObserver = Callable[[int, dict[str, float]], None]

_OBSERVER: ContextVar[Optional[EpochObserver]] = ContextVar("fuseflow_epoch_observer", default=None)

#: the validation metric an epoch line shows when the backend monitors none (the first one the epoch has)
HEADLINE_METRICS = ("val_accuracy", "val_r2")
#: the metrics every epoch line shows first, in this order
LOSSES = ("train_loss", "val_loss")


class TrialPruned(Exception):
    """A sweep's pruner stopped this trial after an epoch: not a failure; the trial's epochs stay logged."""

    def __init__(self, epoch: int, message: str) -> None:
        super().__init__(message)
        self.epoch = epoch


@contextmanager
def observing(observer: Optional[EpochObserver]) -> Iterator[None]:
    """Install `observer` for the training steps run inside this block (None: nothing to install)."""
    token = _OBSERVER.set(observer)
    try:
        yield
    finally:
        _OBSERVER.reset(token)


def notify(epoch: int, metrics: dict[str, Any]) -> None:
    """Tell the installed observer about an epoch (it may raise `TrialPruned`)."""
    observer = _OBSERVER.get()
    if observer is not None:
        observer(epoch, metrics)


def run_log_line(line: str) -> None:
    """`line` at INFO to the Prefect run's logger (the task run's in a task, else the flow run's: Prefect's API
    handler sends those records to the run's logs), else to the `fuseflow` logger. One logger, never both: the
    console handler of `fuseflow run` prints each record once."""
    from tasks.steps.run_logger import run_logger

    run_logger().info("%s", line)


class EpochLog:
    """The progress line of each epoch of one training attempt: epoch n/N, the losses, the monitored metric (marked
    `(best)` when this epoch is the best so far), the epoch's wall time and the time since training started.

    `monitor`: the backend's early-stopping (or best-model) metric; the backend then decides the best epoch and
    says so in the epoch state's `best_epoch`. Without one the line shows the first of `HEADLINE_METRICS` the epoch
    has, best judged here by the metric's direction. `sink` takes each line (default `run_log_line`; a DDP rank
    prints it to its launcher, which logs it)."""

    def __init__(self, epochs: int, monitor: Optional[str] = None,
                 sink: Optional[Callable[[str], None]] = None) -> None:
        self.epochs = epochs
        self.monitor = monitor
        self.sink = sink or run_log_line
        self.started = self._last = time.perf_counter()
        self._best: Optional[float] = None  # the best headline value seen (without a backend monitor)

    def __call__(self, epoch: int, metrics: Mapping[str, float], state: Optional[Mapping[str, Any]] = None) -> str:
        """Write the line of `epoch` (its metrics and the backend's epoch state) and return it."""
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        shown = self.monitor if self.monitor in metrics else next((m for m in HEADLINE_METRICS if m in metrics), None)
        best = shown is not None and self._is_best(epoch, shown, metrics[shown], state or {})
        line = epoch_line(epoch, self.epochs, metrics, shown, best, seconds, now - self.started)
        try:
            self.sink(line)
        except Exception as exc:  # noqa: BLE001 - a progress line never stops training
            logging.getLogger("fuseflow").debug("epoch line not written: %s", exc)
        return line

    def _is_best(self, epoch: int, name: str, value: float, state: Mapping[str, Any]) -> bool:
        if name == self.monitor and "best_epoch" in state:
            return state["best_epoch"] == epoch  # what early stopping / best-model choice decided
        from tasks.evaluate.names import direction

        sign = -1.0 if direction(name) == "max" else 1.0
        if self._best is None:  # a resumed attempt: the epochs before it count
            earlier = [sign * float(row[name]) for row in state.get("history", ())
                       if row.get("epoch", epoch) < epoch and name in row]
            self._best = min(earlier, default=math.inf)
        score = sign * float(value)
        if score < self._best:
            self._best = score
            return True
        return False


def epoch_line(epoch: int, epochs: int, metrics: Mapping[str, float], monitor: Optional[str], best: bool,
               seconds: float, elapsed: float) -> str:
    """`epoch 3/40  train_loss 0.412  val_loss 0.398  val_accuracy 0.912 (best)  1.2 s (elapsed 3.8 s)`: the losses,
    then `monitor` (marked when `best`), the epoch's time and the time since training started."""
    parts = [f"epoch {epoch}/{epochs}"]
    for name in (*LOSSES, *([monitor] if monitor and monitor not in LOSSES else [])):
        if name in metrics:
            parts.append(f"{name} {number(metrics[name])}" + (" (best)" if best and name == monitor else ""))
    parts.append(f"{duration(seconds)} (elapsed {duration(elapsed)})")
    return "  ".join(parts)


def number(value: Any) -> str:
    """A metric, short: 4 significant digits below 1000, one decimal above (a regression's mse of 12345.6)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{value:.1f}" if math.isfinite(value) and abs(value) >= 1000 else f"{value:.4g}"


def duration(seconds: float) -> str:
    """`1.2 s`, `2m05s`, `1h02m`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
