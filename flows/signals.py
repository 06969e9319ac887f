"""SIGTERM as a clean stop: `docker stop`, Kubernetes and CI timeouts send it, and a run must then end KILLED, with
its MLflow and Prefect records closed and its children (a temporary Prefect server, cluster workers) stopped, not
cut off mid-write. While a command runs, SIGTERM raises `Terminated` (Prefect's flow engine swaps in its own
handler during a flow run and hands the signal back to this one once the flow run is marked)."""
from __future__ import annotations

import contextlib
import signal
from typing import Any, Iterator

EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM: 143


class Terminated(BaseException):
    """The process received SIGTERM (a BaseException, so `except Exception` blocks let it through)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises `Terminated` in the main thread inside the block; the previous handler is put back after."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigterm_handler_kept() -> Iterator[None]:
    """Put back the SIGTERM handler a library replaced inside the block: Ray's driver (`ray.init`) installs one that
    calls `sys.exit`, which crashed the flow run and aborted the process (exit -6) instead of ending it KILLED."""
    try:
        before = signal.getsignal(signal.SIGTERM)
    except ValueError:  # pragma: no cover - not the main thread
        before = None
    try:
        yield
    finally:
        if before is not None and signal.getsignal(signal.SIGTERM) is not before:
            try:
                signal.signal(signal.SIGTERM, before)
            except ValueError:  # pragma: no cover - not the main thread: nothing was ours to keep
                pass


def is_termination(exc: BaseException) -> bool:
    """SIGTERM as raised here or by Prefect's flow engine (`prefect.exceptions.TerminationSignal`)."""
    if isinstance(exc, Terminated):
        return True
    try:
        from prefect.exceptions import TerminationSignal
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, TerminationSignal)
