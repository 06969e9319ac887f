"""Shared pieces of the orchestration benchmarks: a throw-away project, a local Prefect server, timed commands,
median tables. Every command runs as a fresh process, as a user would run it."""
from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
BARE = Path(__file__).resolve().parent / "bare_train.py"
QUIET = {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
         "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

#: the benchmark pipelines; bare_train.py is given the same settings on its command line
PIPELINES = """\
pipelines:
  iris-1ep:
    seed: 42
    data: {source: sklearn, name: iris}
    preprocess: [standardize]
    model: {type: mlp, hidden: [16]}
    train: {backend: torch, epochs: 1, batch_size: 16, optimizer: {name: adamw, lr: 0.001}}
    evaluate: {metrics: [accuracy, f1_macro, f1_weighted, precision_macro, recall_macro, log_loss]}
  digits-steady:
    seed: 42
    data: {source: sklearn, name: digits}
    preprocess: [standardize]
    model: {type: mlp, hidden: [HIDDEN, HIDDEN]}
    train: {backend: torch, epochs: EPOCHS, batch_size: 32, optimizer: {name: adamw, lr: 0.001}}
    evaluate: {metrics: [accuracy, f1_macro, f1_weighted, precision_macro, recall_macro, log_loss]}
"""


def fuseflow_command() -> list[str]:
    """The installed `fuseflow` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "fuseflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "flows.cli"]


def make_project(hidden: int = 1024, epochs: int = 150) -> Path:
    """A temporary project folder with the benchmark pipelines and its own MLflow store."""
    folder = Path(tempfile.mkdtemp(prefix="fuseflow-bench-"))
    text = PIPELINES.replace("HIDDEN", str(hidden)).replace("EPOCHS", str(epochs))
    (folder / "pipelines.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def base_env(project: Path, prefect_api_url: str | None) -> dict[str, str]:
    env = {**os.environ, **QUIET, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlruns' / 'mlflow.db'}",
           "PREFECT_HOME": str(project / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    if prefect_api_url:
        env["PREFECT_API_URL"] = prefect_api_url
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrefectServer:
    """`prefect server start` on a free local port with its own home, stopped on exit."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        env = {**os.environ, **QUIET, "PREFECT_HOME": str(home), "PREFECT_SERVER_API_PORT": str(self.port)}
        env.pop("PREFECT_API_URL", None)
        self.log = open(home.parent / "prefect-server.log", "ab")  # noqa: SIM115 - closed in stop()
        prefect = Path(sys.executable).parent / "prefect"
        self.proc = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float = 120) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return time.monotonic() - start
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError("prefect server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def timed(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Wall-clock seconds of one command (which must succeed) and its output."""
    start = time.perf_counter()
    done = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def wait_for_warm_start(project: Path, timeout: float = 120) -> float:
    """Seconds until the warm start beside the background server listens."""
    began = time.monotonic()
    from flows.warm_client import socket_path

    while not socket_path(project).exists():
        if time.monotonic() - began > timeout:
            raise RuntimeError("the warm start did not come up; see .fuseflow/prefect-server/server.log")
        time.sleep(0.2)
    return time.monotonic() - began


def run_id_of(output: str) -> str:
    """The MLflow run id printed by `fuseflow run` ("MLflow run id: ...") or by bare_train.py (JSON)."""
    if "MLflow run id: " in output:
        return output.split("MLflow run id: ")[1].split()[0]
    line = next(line for line in output.splitlines() if line.startswith('{"run_id"'))
    return json.loads(line)["run_id"]


def epoch_span(tracking_uri: str, run_id: str) -> tuple[float, int]:
    """Seconds between the first and the last epoch's `train_loss`, and the number of epochs in between."""
    from mlflow import MlflowClient

    history = sorted(MlflowClient(tracking_uri).get_metric_history(run_id, "train_loss"), key=lambda m: m.step)
    return (history[-1].timestamp - history[0].timestamp) / 1000.0, history[-1].step - history[0].step


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |"
    print(f"\n{title}\n")
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    sys.stdout.flush()
