"""Environment settings a command needs while it runs, set for the call and put back after (the user's values win).

`quiet_defaults()` holds the offline-friendly defaults (no telemetry, a longer start-up timeout for Prefect's
temporary server) while a CLI command runs; `environment(...)` sets any variables for a block.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import ContextManager, Iterator, Mapping

QUIET_DEFAULTS = {
    # no telemetry calls from the ephemeral Prefect server (they fail offline and log errors)
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # a fresh ephemeral database takes 8-15 s to start on a small machine; Prefect's default is 20 s
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    "TOKENIZERS_PARALLELISM": "false",
    # fusion and sweeps download many small model folders: one progress bar per download is noise
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # a tracking server that is gone fails a request in ~15 s (3 retries, waits of 2, 4 and 8 s; 20 s per attempt
    # when it hangs) instead of MLflow's ~4 minutes (7 retries): a run then fails in about a minute, saying so
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


@contextmanager
def environment(values: Mapping[str, str], keep_existing: bool = False) -> Iterator[None]:
    """`values` in `os.environ` inside the block (with `keep_existing`, only where a variable is unset); every
    variable is restored (or removed) when the block ends."""
    saved = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if not (keep_existing and saved[key] is not None):
            os.environ[key] = value
    _refresh_prefect_settings(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _refresh_prefect_settings(values)


def _refresh_prefect_settings(changed: Mapping[str, str]) -> None:
    """Prefect reads its settings from the environment when it is imported; where it is imported already (a run
    forked by the warm start), make it read them again so that a PREFECT_ variable set here takes effect."""
    context = sys.modules.get("prefect.context")
    if context is not None and any(key.startswith("PREFECT_") for key in changed):
        context.refresh_global_settings_context()


def quiet_defaults() -> ContextManager[None]:
    """The quiet defaults where the user has not set them, for the duration of a command."""
    return environment(QUIET_DEFAULTS, keep_existing=True)
