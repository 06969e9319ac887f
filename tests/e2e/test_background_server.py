"""End to end: the background Prefect server of `fuseflow run` with real processes and a real `prefect server start`
on loopback. Two concurrent first runs start one server, a later run reuses it, `fuseflow server stop` leaves no
process; a dead server or a killed supervisor is replaced; the idle timeout stops it. Runs after the first fork from
the warm start beside the server: they use the background server, signals reach them, and a killed client takes its
run along (which `--resume` then continues).

Every supervisor and server seen is killed by PID in the fixture's finalizer, so none outlives the session."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from flows.local_server import ServerPaths, ensure_server, read_state, running
from flows.server import answers
from tests.support.helpers import TINY_IRIS, runs_of, write_pipelines
from tests.support.servers import RUN_TIMEOUT, START_TIMEOUT, base_env, wait_for

pytestmark = pytest.mark.e2e

WARM_LISTENING = re.compile(r"fuseflow warm start (\d+): imported in .*; listening on")
WARM_LINE = re.compile(r"Warm start: forked from the project's pre-imported Python \(pid (\d+)\)")
LINE = re.compile(r"Prefect server: background server at (http://127\.0\.0\.1:\d+) \(UI and API; "
                  r"(started by this run|already running), pid (\d+)\)")


class Project:
    """A tiny iris project folder whose runs use the background server; remembers every process it saw."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths = ServerPaths.of(folder)
        self.uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
        self.seen: list[dict] = []
        write_pipelines(folder, TINY_IRIS.replace("epochs: 4", "epochs: 1"))

    def env(self, **extra: str) -> dict[str, str]:
        return {**base_env(self.folder / "user-prefect-home"), "FUSEFLOW_PREFECT_SERVER": "background",
                "MLFLOW_TRACKING_URI": self.uri, "FUSEFLOW_LOG_DIR": str(self.folder / "logs"),
                "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(self.folder / "prefect-results"), **extra}

    def start_run(self, *args: str, **extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "iris-tiny", *args], cwd=self.folder,
                                env=self.env(**extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finish(self, proc: subprocess.Popen) -> tuple[str, str, int]:
        """Wait for a run; (url, how it found the server, supervisor pid) from its log line."""
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
        assert proc.returncode == 0, out + self.server_log()
        found = LINE.search(out)
        assert found, out
        self.remember()
        return found.group(1), found.group(2), int(found.group(3))

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=self.folder, env=self.env(),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def state(self) -> dict:
        state = read_state(self.paths)
        assert state, "no server.json"
        return state

    def remember(self) -> None:
        state = read_state(self.paths) or {}
        self.seen += [who for who in (state.get("supervisor"), state.get("server")) if who and who not in self.seen]

    def wait_server_pid(self) -> dict:
        return wait_for(lambda: (read_state(self.paths) or {}).get("server"), START_TIMEOUT, "the server's pid")

    def server_log(self) -> str:
        return self.paths.log.read_text(errors="replace")[-3000:] if self.paths.log.exists() else ""

    def warm_start_pid(self) -> int:
        """The pid of the warm start listening beside the server (waited for: it starts once the server answers)."""
        found = wait_for(lambda: WARM_LISTENING.findall(self.full_log()), START_TIMEOUT, "the warm start")
        return int(found[-1])

    def forked_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"forked pid (\d+) for `fuseflow run", self.full_log())]

    def full_log(self) -> str:
        return self.paths.log.read_text(errors="replace") if self.paths.log.exists() else ""

    def kill_all(self) -> None:
        self.remember()
        for who in self.seen:
            if running(who):
                os.kill(who["pid"], signal.SIGKILL)
        for pid in [int(p) for p in WARM_LISTENING.findall(self.full_log())] + self.forked_pids():
            with contextlib.suppress(psutil.Error):
                if "flows.warm_start" in psutil.Process(pid).cmdline():
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """One project for the module (its server database migrates once); whatever it started is killed at the end."""
    project = Project(tmp_path_factory.mktemp("local-server"))
    yield project
    project.kill_all()


@pytest.fixture
def clean(project):
    """Each test starts with no server running and leaves none behind."""
    yield project
    project.kill_all()
    project.paths.state.unlink(missing_ok=True)


def supervisors_of(paths: ServerPaths) -> list[psutil.Process]:
    """Processes running `flows.server_supervisor` for this state folder (zombies excluded)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if "flows.server_supervisor" in cmdline and str(paths.root) in cmdline and \
                proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def test_concurrent_first_runs_start_one_server_later_runs_reuse_it_and_stop_stops_it(clean):
    project = clean
    first = [project.start_run(), project.start_run()]
    results = [project.finish(proc) for proc in first]
    assert sorted(how for _, how, _ in results) == ["already running", "started by this run"]
    assert len({(url, pid) for url, _, pid in results}) == 1  # one server, one supervisor
    url, _, supervisor_pid = results[0]
    state = project.state()
    assert state["supervisor"]["pid"] == supervisor_pid and state["url"] == url
    assert [p.pid for p in supervisors_of(project.paths)] == [supervisor_pid]
    server = psutil.Process(state["server"]["pid"])
    assert server.ppid() == supervisor_pid and "server" in server.cmdline() and "start" in server.cmdline()
    assert all(run.info.status == "FINISHED" for run in runs_of(project.uri)) and len(runs_of(project.uri)) == 2

    assert project.finish(project.start_run()) == (url, "already running", supervisor_pid)
    import httpx  # the runs' task runs are recorded (the server's task run recorder is on)

    assert httpx.post(f"{url}/api/task_runs/count", json={}, timeout=10).json() > 0
    status = project.cli("server", "status")
    assert url in status and f"supervisor pid {supervisor_pid}" in status and "runs using it now: 0" in status

    stopped = project.cli("server", "stop")
    assert f"stopped the background Prefect server at {url}" in stopped
    assert not running(state["supervisor"]) and not running(state["server"])
    assert supervisors_of(project.paths) == [] and not project.paths.state.exists() and not answers(f"{url}/api")
    assert "no background Prefect server" in project.cli("server", "status")


def test_a_dead_server_or_a_killed_supervisor_is_replaced(clean):
    project = clean
    # the server dies: its supervisor removes the state and exits
    started = ensure_server(project.folder)
    wait_for(lambda: answers(started.api_url), START_TIMEOUT, "the background server", started.proc, project.paths.log)
    server = project.wait_server_pid()
    project.remember()
    os.kill(server["pid"], signal.SIGKILL)
    assert started.proc is not None and started.proc.wait(timeout=30) == 1
    assert not project.paths.state.exists()

    # the supervisor and its server are killed (-9): their server.json stays, and the next run replaces it
    killed = ensure_server(project.folder)
    wait_for(lambda: answers(killed.api_url), START_TIMEOUT, "the background server", killed.proc, project.paths.log)
    server = project.wait_server_pid()
    project.remember()
    old = project.state()
    for pid in (old["supervisor"]["pid"], server["pid"]):
        os.kill(pid, signal.SIGKILL)
    assert killed.proc is not None and killed.proc.wait(timeout=10) == -signal.SIGKILL
    wait_for(lambda: not running(server), 10, "the killed server to go")
    assert project.paths.state.exists()
    url, how, pid = project.finish(project.start_run())
    assert how == "started by this run" and pid != old["supervisor"]["pid"]
    assert project.state()["supervisor"]["pid"] == pid
    assert project.cli("server", "stop").startswith("stopped the background Prefect server")


def test_the_idle_timeout_stops_the_server(clean):
    project = clean
    url, how, pid = project.finish(project.start_run(FUSEFLOW_PREFECT_SERVER_IDLE_MINUTES="0.05"))
    assert how == "started by this run"
    state = json.loads(project.paths.state.read_text())
    assert state["idle_minutes"] == 0.05
    began = time.monotonic()
    wait_for(lambda: not project.paths.state.exists() and not running(state["supervisor"])
             and not running(state["server"]), 60, "the idle server to stop")
    assert time.monotonic() - began < 45
    assert "no run for 3 s: stopping the server" in project.server_log()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_later_runs_fork_from_the_warm_start_and_use_the_background_server(clean):
    from mlflow import MlflowClient

    project = clean
    url, how, supervisor = project.finish(project.start_run())
    assert how == "started by this run"
    warm = project.warm_start_pid()
    assert psutil.Process(warm).ppid() == supervisor
    assert stat.S_IMODE(os.stat(project.paths.root / "warm.sock").st_mode) == 0o600  # it runs code as this user

    import httpx

    def flow_runs() -> int:
        return httpx.post(f"{url}/api/flow_runs/count", json={}, timeout=10).json()

    before, runs_before = flow_runs(), len(runs_of(project.uri))
    concurrent = [project.start_run(), project.start_run()]
    outputs = [proc.communicate(timeout=RUN_TIMEOUT)[0] for proc in concurrent]
    for proc, out in zip(concurrent, outputs):
        assert proc.returncode == 0, out + project.server_log()
        assert WARM_LINE.search(out) and int(WARM_LINE.search(out).group(1)) == warm, out
        assert LINE.search(out).group(2) == "already running"
        assert "concepts/server" not in out  # Prefect's note when a run starts a temporary server of its own
    forked = project.forked_pids()
    assert len(forked) == 2 and warm not in forked
    wait_for(lambda: all(gone(pid) for pid in forked), 10, "the forked runs to exit")
    assert flow_runs() == before + 2  # on the background server, not on temporary ones
    runs = runs_of(project.uri)
    assert len(runs) == runs_before + 2 and all(run.info.status == "FINISHED" for run in runs)
    assert all(run.data.metrics.get("timing/startup_s", 0) > 0 for run in runs)

    metrics = []  # the same seed gives the same model, forked or fresh
    for extra in ({}, {"FUSEFLOW_WARM_START": "0"}):
        out = project.start_run("--no-cache", **extra).communicate(timeout=RUN_TIMEOUT)[0]
        assert bool(WARM_LINE.search(out)) == (not extra), out
        run_id = re.search(r"MLflow run id: ([0-9a-f]{32})", out).group(1)
        metrics.append({k: v for k, v in MlflowClient(project.uri).get_run(run_id).data.metrics.items()
                        if k.startswith("test_")})
    assert metrics[0] and metrics[0] == metrics[1]

    assert f"warm start: listening on {project.paths.root / 'warm.sock'}" in project.cli("server", "status")
    assert project.cli("server", "stop").startswith("stopped the background Prefect server")
    assert gone(warm) and not (project.paths.root / "warm.sock").exists()


def read_until(proc: subprocess.Popen, pattern: str) -> str:
    """The run's output up to the first line matching `pattern` (the run goes on)."""
    seen = []
    deadline = time.monotonic() + RUN_TIMEOUT
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("the run ended before " + pattern + ":\n" + "".join(seen))
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
    raise AssertionError(f"no {pattern} within {RUN_TIMEOUT} s:\n" + "".join(seen))


def test_signals_reach_a_forked_run_and_a_killed_client_takes_it_along(clean):
    from mlflow import MlflowClient

    project = clean
    project.finish(project.start_run())
    project.warm_start_pid()
    long = ("--set", "train.epochs=1500")

    terminated = project.start_run(*long)  # SIGTERM to the client (docker stop): forwarded, the run is marked KILLED
    head = read_until(terminated, r"epoch 3/1500")
    assert WARM_LINE.search(head), head
    terminated.send_signal(signal.SIGTERM)
    out = head + terminated.communicate(timeout=RUN_TIMEOUT)[0]
    assert terminated.returncode == 143 and "terminated by SIGTERM" in out, out
    killed_run = re.search(r"MLflow run ([0-9a-f]{32})", out).group(1)
    assert MlflowClient(project.uri).get_run(killed_run).info.status == "KILLED"

    client = project.start_run(*long)  # kill -9 of the client: its forked run dies with it, left RUNNING
    head = read_until(client, r"epoch 3/1500")
    forked = project.forked_pids()[-1]
    assert not gone(forked)
    client.kill()
    client.wait(timeout=10)
    wait_for(lambda: gone(forked), 10, "the forked run of a killed client to die")
    crashed = re.search(r"MLflow run ([0-9a-f]{32})", head).group(1)
    assert MlflowClient(project.uri).get_run(crashed).info.status == "RUNNING"

    resumed = project.start_run(*long, "--resume")
    out = resumed.communicate(timeout=RUN_TIMEOUT)[0]
    assert resumed.returncode == 0 and f"resuming MLflow run {crashed}" in out and WARM_LINE.search(out), out
    assert MlflowClient(project.uri).get_run(crashed).info.status == "FINISHED"
