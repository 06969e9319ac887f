"""Real servers for end-to-end tests: a `prefect server start` on a free loopback port, child processes in their own
process groups stopped by PID, polling with the log tail on failure."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180  # a fresh Prefect database starts in 8-15 s on 2 idle cores; CI machines are often busier
RUN_TIMEOUT = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(home: Path) -> dict[str, str]:
    """The test session's environment with an own PREFECT_HOME and no PREFECT_API_URL or MLflow URI inherited."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "MLFLOW_UI_URL")}
    env.update({"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1"})
    return env


def start(argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """A child in its own session (its own process group), output to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
    try:  # children that outlived their leader (same group id)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for(check: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen | None = None,
             log: Path | None = None, every: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail with the log tail when the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}\n{tail(log)}")
        try:
            value = check()
        except Exception:  # noqa: BLE001 - not ready yet
            value = None
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tail(log)}")


def tail(log: Path | None, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log and log.exists() else ""


class RetryingTransport(httpx.BaseTransport):
    """An httpx transport that asks again on 503 and 429, as Prefect's own client does (PREFECT_CLIENT_MAX_RETRIES):
    the server answers 503 when its sqlite database is busy on a loaded machine, and nothing was done."""

    RETRY_STATUS = (429, 503)

    def __init__(self, attempts: int = 6) -> None:
        self.inner, self.attempts = httpx.HTTPTransport(), attempts

    def handle_request(self, request: Any) -> Any:
        for attempt in range(self.attempts):
            response = self.inner.handle_request(request)
            if response.status_code not in self.RETRY_STATUS or attempt == self.attempts - 1:
                return response
            response.read()
            response.close()
            time.sleep(0.5 * 2 ** attempt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.inner.close()


class Api:
    """The Prefect REST API, as the UI uses it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30, transport=RetryingTransport())

    def deployment(self, name: str) -> dict:
        response = self.http.get(f"/deployments/name/fuseflow/{name}")
        response.raise_for_status()
        return response.json()

    def create_run(self, deployment_id: str, parameters: dict) -> Any:
        """What the UI's Custom run does."""
        return self.http.post(f"/deployments/{deployment_id}/create_flow_run", json={"parameters": parameters})

    def flow_run(self, run_id: str) -> dict:
        return self.http.get(f"/flow_runs/{run_id}").json()

    def wait_final(self, run_id: str, log: Path) -> dict:
        return wait_for(lambda: (r := self.flow_run(run_id))["state"]["type"] in
                        ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") and r, RUN_TIMEOUT, f"flow run {run_id}",
                        log=log)

    def artifacts(self, run_id: str) -> list[dict]:
        return self.http.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}}).json()


@contextmanager
def prefect_server(folder: Path, database_url: str | None = None, ui: bool = False) -> Iterator[tuple[Api, Path]]:
    """A real `prefect server start` on a free loopback port; yields the API and its PREFECT_HOME. `database_url`
    (`postgresql+asyncpg://...`) puts its database on PostgreSQL instead of sqlite; `ui` serves the UI at its root
    URL (the port goes in PREFECT_SERVER_API_PORT too, so the UI's /ui-settings points here)."""
    port = free_port()
    env = {**base_env(folder / "home"), "PREFECT_SERVER_API_PORT": str(port), "PREFECT_SERVER_API_HOST": "127.0.0.1",
           "PREFECT_UI_ENABLED": "true" if ui else "false"}
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    log = folder / "server.log"
    proc = start([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                 env, log)
    try:
        api = Api(f"http://127.0.0.1:{port}/api")
        wait_for(lambda: api.http.get("/health").status_code == 200, START_TIMEOUT, "the Prefect server", proc, log)
        yield api, folder / "home"
    finally:
        stop_group(proc)


class MlflowServer:
    """`mlflow server` on a fixed loopback port (restartable on the same port) over a store in `folder`: its own
    sqlite database, or `backend_uri` (a PostgreSQL URL); artifacts in `folder/artifacts`."""

    def __init__(self, folder: Path, backend_uri: str | None = None, workers: int = 1,
                 artifact_root: str | None = None) -> None:
        self.folder, self.port, self.workers = folder, free_port(), workers
        self.backend_uri = backend_uri or f"sqlite:///{folder / 'mlflow.db'}"
        self.artifact_root = artifact_root or (folder / "artifacts").as_uri()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "mlflow-server.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import urllib.request

        env = {**base_env(self.folder / "prefect-home"), "MLFLOW_DISABLE_TELEMETRY": "true"}
        self.proc = start([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                           "--workers", str(self.workers), "--backend-store-uri", self.backend_uri,
                           "--default-artifact-root", self.artifact_root], env, self.log)
        wait_for(lambda: urllib.request.urlopen(f"{self.url}/health", timeout=2).status == 200, START_TIMEOUT,
                 "mlflow server", self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, grace=0.1)
