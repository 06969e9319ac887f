"""The logger of the Prefect task or flow run this code runs in (its lines reach the run's logs in the UI), else
the `fuseflow` logger: for code that runs both inside Prefect and outside it (tests, DDP workers' launcher)."""
from __future__ import annotations

import logging
from typing import Any


def run_logger() -> Any:
    """Prefect's run logger inside a run, else `logging.getLogger("fuseflow")`."""
    try:
        from prefect.exceptions import MissingContextError
        from prefect.logging import get_run_logger
    except ImportError:  # pragma: no cover - without Prefect
        return logging.getLogger("fuseflow")
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("fuseflow")
