"""Who else watches a training step's epochs: an observer installed around a step (a sweep trial's pruning reporter)
gets each epoch's metrics after they are logged, and may stop training by raising `TrialPruned`. Installed per
context (thread or task), so concurrent trials each have their own."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Optional

EpochObserver = Callable[[int, dict[str, float]], None]

_OBSERVER: ContextVar[Optional[EpochObserver]] = ContextVar("fuseflow_epoch_observer", default=None)


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
