"""Test session set-up: offline settings, an isolated Prefect (harness started once), temporary MLflow stores."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="fuseflow-tests-"))

# Before Prefect/MLflow are imported anywhere: nothing leaves the machine, nothing touches the user's state.
os.environ.update({
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_HOME": str(_SESSION_TMP / "prefect-home"),
    "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(_SESSION_TMP / "prefect-results"),
    "HF_DATASETS_CACHE": str(_SESSION_TMP / "hf-datasets"),
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "FUSEFLOW_LOG_DIR": str(_SESSION_TMP / "logs"),
    "FUSEFLOW_CACHE_KEY_FILE": str(_SESSION_TMP / "cache.key"),  # the cache signing key: not the user's
    "FUSEFLOW_PREFECT_SERVER": "temporary",  # no background servers; tests/e2e/test_background_server.py asks for them
})
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def prefect_harness():
    """One isolated Prefect API for the whole session (it takes ~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
        _forget_services_on_closed_loops()


def _forget_services_on_closed_loops() -> None:
    """The harness drains Prefect's event and log workers when it stops; a worker whose event loop a test closed
    (an `asyncio.run` that used a Prefect client) can no longer be drained, and its drain raised "Event loop is
    closed" at the session's end (seen once the suite ran on two pytest-xdist workers, in another order). Such a
    worker has nothing left to send: drop it before the harness stops."""
    from prefect._internal.concurrency.services import _QueueServiceBase

    with _QueueServiceBase._instance_cache_lock:
        for key, service in list(_QueueServiceBase._instances.items()):
            loop = getattr(service, "_loop", None)
            if loop is not None and loop.is_closed():
                del _QueueServiceBase._instances[key]


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh sqlite MLflow store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def project_dir(tmp_path, monkeypatch) -> Path:
    """A temporary project folder as the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
