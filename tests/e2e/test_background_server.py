"""End to end: the background Prefect server of `fuseflow run` with real processes and a real `prefect server start`
on loopback. Two concurrent first runs start one server, a later run reuses it, `fuseflow server stop` leaves no
process; a dead server or a killed supervisor is replaced; the idle timeout stops it.

Every supervisor and server seen is killed by PID in the fixture's finalizer, so none outlives the session."""
from __future__ import annotations

import json
import os
import re
import signal
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

    def start_run(self, **extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "iris-tiny"], cwd=self.folder,
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

    def kill_all(self) -> None:
        self.remember()
        for who in self.seen:
            if running(who):
                os.kill(who["pid"], signal.SIGKILL)


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
