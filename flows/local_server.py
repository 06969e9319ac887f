"""The background Prefect server of `fuseflow run`: started by a project's first run, reused by later ones, stopped
by its supervisor (flows/server_supervisor.py) after an idle time. This saves the ~7 s start and stop of Prefect's
temporary server on every run.

State, in `.fuseflow/prefect-server/` of the project folder: `server.json` (url, pids and start times of the
supervisor and the server, log path), `start.lock` (held while a run starts or reuses the server and while the
supervisor retires it), `last-used` (touched by each run at its start and end), `runs/<pid>-<start time>` (one lease
per run in progress), `home/` (the server's PREFECT_HOME, with its sqlite database) and `server.log`.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from flows.stack import HOST, Service
from tasks.errors import ConfigError
from tasks.file_lock import exclusive
from tasks.paths import PREFECT_SERVER_DIR
from tasks.processes import process_started, same_process

IDLE_ENV = "FUSEFLOW_PREFECT_SERVER_IDLE_MINUTES"
DEFAULT_IDLE_MINUTES = 30.0
STOP_HINT = "`fuseflow server stop`"

#: a process as the state files name it: {"pid": 123, "started": <seconds since the epoch>}
Ident = dict[str, Any]


@dataclass(frozen=True)
class ServerPaths:
    """The files of one project's background server."""

    root: Path

    @classmethod
    def of(cls, project_dir: Path | str | None) -> "ServerPaths":
        """The state folder of the project folder `project_dir` (default: the current folder)."""
        return cls(Path(project_dir or ".").resolve() / PREFECT_SERVER_DIR)

    @property
    def state(self) -> Path:
        """`server.json`: the server's address, pids and log."""
        return self.root / "server.json"

    @property
    def lock(self) -> Path:
        """`start.lock`: held while the server is started, reused or retired."""
        return self.root / "start.lock"

    @property
    def last_used(self) -> Path:
        """`last-used`: touched by each run at its start and end."""
        return self.root / "last-used"

    @property
    def runs(self) -> Path:
        """`runs`: one lease file per run in progress."""
        return self.root / "runs"

    @property
    def home(self) -> Path:
        """`home`: the server's PREFECT_HOME (its database)."""
        return self.root / "home"

    @property
    def log(self) -> Path:
        """`server.log`: the supervisor's and the server's output."""
        return self.root / "server.log"


@contextlib.contextmanager
def locked(paths: ServerPaths) -> Iterator[None]:
    """An exclusive lock on `start.lock`: one process at a time starts, reuses or retires the server."""
    with exclusive(paths.lock):
        yield


def read_state(paths: ServerPaths) -> Optional[dict[str, Any]]:
    """The contents of `server.json`, or None when there is none (or it is unreadable)."""
    try:
        state = json.loads(paths.state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def write_state(paths: ServerPaths, state: dict[str, Any]) -> None:
    """Replace `server.json` atomically (readers never see half a file)."""
    tmp = paths.state.with_name(f".server.json.{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(tmp, paths.state)


def ident(pid: int) -> Ident:
    """`pid` with its start time: together they name one process, even once the pid is reused."""
    return {"pid": pid, "started": process_started(pid)}


def running(who: Optional[Ident]) -> bool:
    """True when `who` is a live process (same pid and start time; a zombie counts as gone)."""
    if not isinstance(who, dict) or not isinstance(who.get("pid"), int):
        return False
    if not same_process(who["pid"], who.get("started")):
        return False
    import psutil

    try:
        return psutil.Process(who["pid"]).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def terminate(who: Ident, grace: float = 10.0) -> bool:
    """SIGTERM `who` (its whole process group when it leads one), SIGKILL after `grace` s; True once it is gone.
    For processes that are not our children (flows.stack.stop needs a Popen)."""
    pid = who["pid"]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not running(who):
            return True
        try:
            os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while running(who) and time.monotonic() < deadline:
            time.sleep(0.1)
    return not running(who)


def touch(path: Path) -> None:
    """Create `path` or bump its modification time (the activity marks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def live_leases(paths: ServerPaths, prune: bool = False) -> list[int]:
    """The pids of the runs holding a lease now; a lease whose process is gone does not count (`prune` removes it)."""
    found = []
    for path in sorted(paths.runs.iterdir()) if paths.runs.is_dir() else []:
        pid, _, started = path.name.partition("-")
        try:
            who: Optional[Ident] = {"pid": int(pid), "started": float(started)}
        except ValueError:
            who = None
        if running(who):
            found.append(int(pid))
        elif prune:
            path.unlink(missing_ok=True)
    return found


def last_activity(paths: ServerPaths, since: float) -> float:
    """When a run last started or ended (`last-used`), but not before `since` (the supervisor's start)."""
    try:
        return max(since, paths.last_used.stat().st_mtime)
    except OSError:
        return since


def idle_expired(last_used: float, now: float, leases: int, idle_s: float) -> bool:
    """The supervisor's decision: stop when no run holds a lease and none started or ended for `idle_s` s."""
    return leases == 0 and now - last_used >= idle_s


def idle_minutes() -> float:
    """FUSEFLOW_PREFECT_SERVER_IDLE_MINUTES (a number above 0), default 30; a bad value is a config error."""
    raw = os.environ.get(IDLE_ENV, "").strip()
    if not raw:
        return DEFAULT_IDLE_MINUTES
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError.single(f"{IDLE_ENV}={raw!r}: expected a number of minutes above 0 (default 30)")
    return value


def describe_idle(minutes: float) -> str:
    """30 -> '30 min'; 0.05 -> '3 s'."""
    return f"{minutes:.3g} min" if minutes >= 1 else f"{minutes * 60:.0f} s"


@dataclass
class BackgroundServer:
    """The background server a run uses: its address, whether this run started it, and the run's lease."""

    paths: ServerPaths
    state: dict[str, Any]
    started_here: bool
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)  # the supervisor, when this run started it

    @property
    def api_url(self) -> str:
        return str(self.state["api_url"])

    @property
    def log(self) -> Path:
        return Path(self.state["log"])

    @property
    def description(self) -> str:
        """The run's log line: which server, and how it ends."""
        how = "started by this run" if self.started_here else "already running"
        idle = describe_idle(float(self.state.get("idle_minutes", DEFAULT_IDLE_MINUTES)))
        return (f"Prefect server: background server at {self.state['url']} (UI and API; {how}, pid "
                f"{self.state['supervisor']['pid']}); it stops after {idle} idle, or now with {STOP_HINT}")

    def gone(self) -> bool:
        """True when the supervisor has exited (then the server is gone, or going)."""
        if self.proc is not None:
            return self.proc.poll() is not None
        return not running(self.state.get("supervisor"))

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Hold a lease for the run (the server is not stopped while it runs); released however the run ends."""
        path = self.paths.runs / f"{os.getpid()}-{process_started(os.getpid()) or 0:.3f}"
        touch(path)
        touch(self.paths.last_used)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            touch(self.paths.last_used)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def launch_supervisor(paths: ServerPaths, port: int, minutes: float) -> subprocess.Popen:
    """Start the supervisor detached (own session, output to the log); it starts the server and outlives this run."""
    if paths.log.exists():  # one log per server life; the last one's is kept beside it
        os.replace(paths.log, paths.log.with_name("server.previous.log"))
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-m", "flows.server_supervisor", "--state-dir", str(paths.root), "--port", str(port),
            "--idle-minutes", repr(minutes)]
    service = Service("fuseflow server supervisor", argv, env, log_path=paths.log)
    service.start()
    assert service.proc is not None
    return service.proc


def retire(paths: ServerPaths, state: Optional[dict[str, Any]]) -> None:
    """Remove what a dead supervisor left: its server (when that very process still runs), `server.json`, leases
    of gone runs."""
    server = (state or {}).get("server")
    if running(server):
        terminate(server)
    paths.state.unlink(missing_ok=True)
    live_leases(paths, prune=True)


Launcher = Callable[[ServerPaths, int, float], subprocess.Popen]


def ensure_server(project_dir: Path | str | None, launch: Optional[Launcher] = None) -> BackgroundServer:
    """The project's background server: reused when its supervisor is alive, else started (returns at once; the
    caller waits for its health). Under the start lock, so concurrent first runs start one server."""
    paths = ServerPaths.of(project_dir)
    minutes = idle_minutes()
    with locked(paths):
        state = read_state(paths)
        if state is not None and running(state.get("supervisor")):
            touch(paths.last_used)  # under the lock: the supervisor cannot retire it before this run's lease
            return BackgroundServer(paths, state, started_here=False)
        retire(paths, state)
        port = free_port()
        touch(paths.last_used)
        proc = (launch or launch_supervisor)(paths, port, minutes)
        url = f"http://{HOST}:{port}"
        state = {"url": url, "api_url": f"{url}/api", "port": port, "supervisor": ident(proc.pid), "server": None,
                 "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 "log": str(paths.log), "idle_minutes": minutes, "home": str(paths.home)}
        write_state(paths, state)
    return BackgroundServer(paths, state, started_here=True, proc=proc)
