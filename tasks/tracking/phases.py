"""Where a run's wall time went: start-up, opening the MLflow run, each step, registration. Logged with every run as
metrics `timing/<phase>_s` (MLflow's charts group them under `timing`, so a regression shows across runs) and as
the table `timings.json`, and said in one log line."""
from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar
from typing import Any, Iterator, Optional

#: when the command that runs the flow started (the CLI sets it): start-up is counted from there
_STARTED_AT: ContextVar[Optional[float]] = ContextVar("fuseflow_started_at", default=None)
METRIC_PREFIX = "timing/"
TABLE_FILE = "timings.json"


#: when the command began, where that is not this process' start (a run forked by the warm start: its client's)
_command_started_at: list[float] = []


def set_process_started_at(seconds: float) -> None:
    """Count this process' start-up from `seconds` (Unix time): the warm start's client started the command."""
    _command_started_at[:] = [seconds]


def process_started_at() -> float:
    """Unix time when this process started, so that interpreter start and imports count as start-up. On Linux from
    the process' start in clock ticks since boot and the boot-time clock (psutil's figure adds the boot time in whole
    seconds: up to a second off)."""
    import os

    if _command_started_at:
        return _command_started_at[0]

    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            start_ticks = int(handle.read().rpartition(")")[2].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        import psutil

        return psutil.Process().create_time()


@contextlib.contextmanager
def startup_clock(started_at: float) -> Iterator[None]:
    """Runs started in the block count their start-up from `started_at` (a command's own start)."""
    token = _STARTED_AT.set(started_at)
    try:
        yield
    finally:
        _STARTED_AT.reset(token)


class PhaseTimer:
    """Seconds per named phase, in the order they first ran (a phase run twice adds up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        started_at = _STARTED_AT.get()
        if started_at is not None:
            self.add("startup", max(0.0, time.time() - started_at))
        self._opened = time.perf_counter()

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as phase `name`."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - began)

    def opened(self) -> None:
        """The MLflow run is open: the time since the timer was made is `open-run`."""
        self.add("open-run", time.perf_counter() - self._opened)

    def metrics(self) -> dict[str, float]:
        return {f"{METRIC_PREFIX}{name}_s": round(value, 4) for name, value in self.seconds.items()}

    def rows(self) -> list[dict[str, Any]]:
        total = sum(self.seconds.values()) or 1.0
        return [{"phase": name, "seconds": round(value, 3), "share": round(value / total, 3)}
                for name, value in self.seconds.items()]

    def summary(self) -> str:
        return ", ".join(f"{name} {value:.2f} s" for name, value in self.seconds.items())


def log_timings(timer: PhaseTimer, logger: Any, log: Any) -> None:
    """Metrics, table and one line; never fails the run it describes."""
    if not timer.seconds:
        return
    try:
        logger.log_metrics(timer.metrics())
        logger.log_table(timer.rows(), TABLE_FILE)
        log.info("timings: %s", timer.summary())
    except Exception as exc:  # noqa: BLE001 - bookkeeping only
        log.warning("could not log the run's timings: %s", exc)
