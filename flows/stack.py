"""`fuseflow up`: the local stack in one command, all on 127.0.0.1 -- a Prefect server, an MLflow server over the
project's store, and `fuseflow serve` for the pipelines. Ctrl-C stops serve first, then the servers."""
from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Sequence

from tasks.errors import ConfigError, ConfigIssue
from tasks.paths import LOG_DIR
from tasks.paths import STACK_FILE as STATE_FILE

HOST = "127.0.0.1"


@dataclass
class Service:
    """One child process of the stack, started in its own session so a terminal Ctrl-C reaches only `up`."""

    name: str
    argv: list[str]
    env: dict[str, str]
    health_url: str | None = None
    log_path: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the process in a new session; output to its log file (or inherited when it has none)."""
        out: IO[Any] | None = None
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it; closed with the process
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        if out:
            out.close()

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the service's log, for error messages."""
        if not self.log_path or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def port_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((host, port)) != 0


def wait_healthy(service: Service, timeout: float) -> float:
    """Poll the service's health URL until it answers 200; seconds waited. Fails early when the process exits."""
    import httpx

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if service.proc is not None and service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited with code {service.proc.returncode} before it was ready; "
                               f"last lines of {service.log_path}:\n{service.log_tail()}")
        try:
            if httpx.get(service.health_url, timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{service.name} did not answer {service.health_url} within {timeout:.0f} s; "
                       f"see {service.log_path}")


def stop(service: Service, first: int = signal.SIGTERM, grace: float = 30.0) -> int | None:
    """Stop the service's process group: `first` (SIGTERM: graceful for serve and both servers), then SIGKILL."""
    proc = service.proc
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    for sig, wait in ((first, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()


def local_store(tracking_uri: str) -> tuple[str, str] | None:
    """(absolute sqlite URI, artifact root URI) of a local sqlite store; None for a remote tracking server."""
    from tasks.tracking.logger import artifact_root_for

    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}", artifact_root_for(tracking_uri) or db.parent.as_uri()


def project_tracking_uri(file: str | Path) -> str:
    """MLFLOW_TRACKING_URI, else `defaults.tracking.uri` of the file, else the project's sqlite store."""
    from flows.spec.project import load_project
    from tasks.tracking.logger import resolve_tracking_uri

    defaults = load_project(file).located.data.get("defaults") or {}
    return resolve_tracking_uri((defaults.get("tracking") or {}).get("uri"))


def build_services(file: Path, names: Sequence[str], prefect_port: int, mlflow_port: int,
                   tracking_uri: str) -> tuple[list[Service], dict[str, str]]:
    """The stack's processes in start order, and the URLs it offers."""
    base_env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true",
                "MLFLOW_DISABLE_TELEMETRY": "true"}
    prefect_url = f"http://{HOST}:{prefect_port}"
    urls = {"prefect_url": prefect_url, "prefect_api_url": f"{prefect_url}/api", "tracking_uri": tracking_uri}
    services = [Service(
        "prefect server", [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(prefect_port)],
        # PREFECT_SERVER_API_PORT too: with --port alone, the UI's /ui-settings still points the browser at 4200
        {**base_env, "PREFECT_SERVER_API_PORT": str(prefect_port), "PREFECT_SERVER_API_HOST": HOST},
        f"{prefect_url}/api/health", LOG_DIR / "up-prefect-server.log")]
    store = local_store(tracking_uri)
    urls["tracking_uri"] = store[0] if store else tracking_uri
    if store:
        urls["mlflow_url"] = f"http://{HOST}:{mlflow_port}"
        services.append(Service(
            "mlflow server", [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(mlflow_port),
                              "--workers", "1", "--backend-store-uri", store[0], "--default-artifact-root", store[1]],
            base_env, f"{urls['mlflow_url']}/health", LOG_DIR / "up-mlflow-server.log"))
    else:
        urls["mlflow_url"] = tracking_uri  # a tracking server already: its UI is at the same address
    serve_env = {**base_env, "PREFECT_API_URL": urls["prefect_api_url"], "MLFLOW_UI_URL": urls["mlflow_url"],
                 "MLFLOW_TRACKING_URI": store[0] if store else tracking_uri}
    services.append(Service("fuseflow serve", [sys.executable, "-m", "flows.cli", "serve", "--file", str(file), *names],
                            serve_env))
    return services, urls


def write_state(urls: dict[str, str], services: Sequence[Service], file: Path) -> None:
    """`.fuseflow/stack.json`: where the running stack answers (read by `fuseflow run` to reuse its server)."""
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    state = {**urls, "file": str(file), "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
             "pids": {"up": os.getpid(), **{s.name.replace(" ", "_"): s.proc.pid for s in services if s.proc}}}
    STATE_FILE.write_text(json.dumps(state, indent=2), encoding="utf-8")


def up(file: str | Path, names: Sequence[str] = (), prefect_port: int = 4200, mlflow_port: int = 5000,
       out: IO[str] | None = None) -> int:
    """Start the stack, print the URLs, wait for Ctrl-C (or SIGTERM, or a child dying), stop it in order."""
    from flows.deploy import select
    from flows.run_report import mlflow_ui_url
    from flows.spec.project import load_project

    out = out or sys.stdout
    file = Path(file).resolve()
    select(load_project(file), names)  # config errors exit 2 before anything starts
    tracking_uri = project_tracking_uri(file)
    ports = {"prefect": prefect_port, **({"mlflow": mlflow_port} if local_store(tracking_uri) else {})}
    busy = [ConfigIssue(f"{what} port {port} on {HOST} is in use (pass --{what}-port)")
            for what, port in ports.items() if not port_free(port)]
    if busy:
        raise ConfigError(busy)
    services, urls = build_services(file, names, prefect_port, mlflow_port, tracking_uri)
    servers, serve = services[:-1], services[-1]
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for service in servers:
            service.start()
        for service in servers:
            took = wait_healthy(service, timeout=120)
            print(f"{service.name} ready in {took:.1f} s (log: {service.log_path})", file=out, flush=True)
        serve.start()
        write_state(urls, services, file)
        print(f"Prefect UI: {urls['prefect_url']}\nMLflow UI:  {mlflow_ui_url(urls['mlflow_url'])}\n"
              f"state: {STATE_FILE}; Ctrl-C stops everything", file=out, flush=True)
        while True:
            for service in services:
                if service.proc is not None and service.proc.poll() is not None:
                    raise RuntimeError(f"{service.name} exited with code {service.proc.returncode}"
                                       + (f"; see {service.log_path}" if service.log_path else ""))
            time.sleep(1)
    except KeyboardInterrupt:
        print("stopping: fuseflow serve, then the servers", file=out, flush=True)
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the orderly stop short
        try:
            for service in [serve, *reversed(servers)]:  # serve first: stopped with the server, it retries ~100 s
                if service.proc is not None:
                    code = stop(service)
                    print(f"stopped {service.name} (exit code {code})", file=out, flush=True)
            STATE_FILE.unlink(missing_ok=True)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM to `up` stops the stack as Ctrl-C does."""
    raise KeyboardInterrupt
