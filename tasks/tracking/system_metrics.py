"""System metrics (CPU, memory, disk, network; GPU where `nvidia-ml-py` finds one) sampled into a run while it
trains, by MLflow's own `SystemMetricsMonitor` with an explicit run id (no active run), as `system/...` metrics.

Nested runs (sweep trials, fusion members) record none: they share the machine, and so the monitor, of their
parent run, which samples while they train. `MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false` turns it off;
`MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL` (seconds) overrides the interval.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator

#: seconds between samples: short runs (seconds to minutes) still get a curve
SAMPLING_INTERVAL = 1.0
PREFIX = "system/"

log = logging.getLogger("fuseflow")


def enabled() -> bool:
    """Off only when MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING says false (fuseflow's default is on)."""
    return os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "").strip().lower() not in ("false", "0", "no")


def is_nested(logger: Any) -> bool:
    """Whether the logger's run is a nested run (a sweep trial, a fusion member)."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    return bool(logger.client.get_run(logger.run_id).data.tags.get(MLFLOW_PARENT_RUN_ID))


@contextlib.contextmanager
def system_metrics(logger: Any, interval: float = SAMPLING_INTERVAL, nested: bool = False) -> Iterator[None]:
    """Sample system metrics into `logger`'s run inside the block (stopped in a `finally`); nothing for a nested
    run unless `nested`, nor when turned off. A block too short for one interval still logs one sample."""
    if logger is None or not enabled() or (not nested and is_nested(logger)):
        yield
        return
    monitor = _start(logger, interval)
    first_step = monitor._logging_step if monitor is not None else 0  # noqa: SLF001 - the next step it logs
    try:
        yield
    finally:
        if monitor is not None:
            _stop(monitor, first_step)


def _start(logger: Any, interval: float) -> Any:
    """A started monitor, or None when it cannot start (a warning: training goes on without it)."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # resume_logging: a retried train step or a --resume continues the steps instead of rewriting step 0
        monitor = SystemMetricsMonitor(logger.run_id, sampling_interval=interval, samples_before_logging=1,
                                       resume_logging=True, tracking_uri=logger.tracking_uri)
        monitor.start()
        return monitor
    except Exception as exc:  # noqa: BLE001 - monitoring must never fail a run
        log.warning("system metrics: not recorded (%s: %s)", type(exc).__name__, exc)
        return None


def _stop(monitor: Any, first_step: int) -> None:
    """Stop the sampling thread and flush; log one sample when it published none (a block under one interval)."""
    try:
        monitor.finish()
        if monitor._logging_step == first_step:  # noqa: SLF001 - nothing published since it started
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()
    except Exception as exc:  # noqa: BLE001
        log.warning("system metrics: could not be flushed (%s: %s)", type(exc).__name__, exc)
