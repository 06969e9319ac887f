"""Process-wide defaults applied before Prefect or MLflow is imported (the user's environment always wins)."""
from __future__ import annotations

import os

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
}


def apply_defaults() -> None:
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)
