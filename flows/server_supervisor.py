"""The supervisor of the background Prefect server (`python -m flows.server_supervisor`, started detached by
flows/local_server.py): runs `prefect server start` on loopback as its child and stops it when no run used it for
the idle time, when told to (SIGTERM: `fuseflow server stop`), or cleans up and exits when the server dies."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from flows.env import QUIET_DEFAULTS
from flows.local_server import (ServerPaths, describe_idle, ident, idle_expired, last_activity, live_leases, locked,
                                read_state, write_state)
from flows.stack import HOST, Service, stop

#: Prefect's loop services that only deployments, work pools and paused or cancelled runs need; the ones a run's UI
#: needs (task run recorder, event persister, triggers) stay on. Idle CPU over 60 s on 2 cores (two samples): all
#: services 1.49/1.38 s, these off 1.13/1.04 s, `--no-services` 0.84/0.92 s, but that one records no task runs.
SERVICES_OFF = ("SCHEDULER", "LATE_RUNS", "FOREMAN", "REPOSSESSOR", "CLEANUP_RECONCILER", "PAUSE_EXPIRATIONS",
                "CANCELLATION_CLEANUP")
STOP_GRACE_S = 10.0


class _Stop(Exception):
    """A signal asked the supervisor to stop."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop(signal.Signals(signum).name)


def _say(message: str) -> None:
    """A line in the server's log (the supervisor's stdout)."""
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} fuseflow supervisor {os.getpid()}: {message}", flush=True)


def server_service(paths: ServerPaths, port: int) -> Service:
    """`prefect server start` on HOST:port with its own PREFECT_HOME, no telemetry, no user API or profile."""
    env = {**QUIET_DEFAULTS, **{k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}}
    env.update({"PREFECT_HOME": str(paths.home), "PREFECT_SERVER_API_HOST": HOST, "PREFECT_SERVER_API_PORT": str(port),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true",
                **{f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in SERVICES_OFF}})
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)]
    return Service("prefect server", argv, env, f"http://{HOST}:{port}/api/health", paths.log)


class WarmStart:
    """The project's pre-imported Python (flows/warm_start.py) beside the server: started once the server answers,
    started again when it exits (it does when the installed packages change), given up after repeated quick
    failures, stopped with the server. FUSEFLOW_WARM_START=0 in the first run's environment leaves it out."""

    QUICK_EXIT_S = 30.0
    MAX_QUICK_EXITS = 3

    def __init__(self, paths: ServerPaths) -> None:
        from flows.warm_client import MAX_SOCKET_PATH, SOCKET_NAME, disabled

        self.socket = paths.root / SOCKET_NAME
        self.enabled = not disabled() and len(str(self.socket)) <= MAX_SOCKET_PATH
        self.service = Service("warm start", [sys.executable, "-m", "flows.warm_start", "--socket", str(self.socket)],
                               {**QUIET_DEFAULTS, **os.environ}, log_path=paths.log)
        self.started_at, self.quick_exits = 0.0, 0

    @property
    def running(self) -> bool:
        return self.service.proc is not None and self.service.proc.poll() is None

    def tend(self, server_url: str) -> None:
        """Start it when it is not running (and the server answers); count its quick exits."""
        if not self.enabled or self.running:
            return
        proc = self.service.proc
        if proc is not None:
            quick = time.monotonic() - self.started_at < self.QUICK_EXIT_S and proc.returncode != 0
            self.quick_exits = self.quick_exits + 1 if quick else 0
            if self.quick_exits >= self.MAX_QUICK_EXITS:
                _say(f"the warm start exited {self.quick_exits} times in a row (code {proc.returncode}); runs start "
                     "without it")
                self.enabled = False
                return
        from flows.server import answers

        if answers(f"{server_url}/api"):
            self.started_at = time.monotonic()
            self.service.start()
            assert self.service.proc is not None
            _say(f"warm start pid {self.service.proc.pid} on {self.socket}")

    def stop(self) -> None:
        if self.service.proc is not None:
            stop(self.service, grace=STOP_GRACE_S)
        self.socket.unlink(missing_ok=True)


def _mine(state: Optional[dict[str, Any]]) -> bool:
    """True when `state` names this process as its supervisor (a newer supervisor's state is left alone)."""
    return isinstance(state, dict) and isinstance(state.get("supervisor"), dict) and \
        state["supervisor"].get("pid") == os.getpid()


def _record_server(paths: ServerPaths, pid: int) -> None:
    """Add the server's pid and start time to `server.json` (which the starting run wrote under the lock)."""
    with locked(paths):
        state = read_state(paths)
        if state is not None and _mine(state):
            write_state(paths, {**state, "server": ident(pid)})


def _forget(paths: ServerPaths) -> None:
    """Remove `server.json` when it still names this supervisor."""
    if _mine(read_state(paths)):
        paths.state.unlink(missing_ok=True)


def _retire_if_idle(paths: ServerPaths, service: Service, since: float, idle_s: float) -> bool:
    """Under the start lock (a run cannot pick the server up meanwhile): when idle, stop the server and forget it."""
    with locked(paths):
        leases = live_leases(paths, prune=True)
        if not idle_expired(last_activity(paths, since), time.time(), len(leases), idle_s):
            return False
        _say(f"no run for {describe_idle(idle_s / 60)}: stopping the server")
        stop(service, grace=STOP_GRACE_S)
        _forget(paths)
        return True


def supervise(paths: ServerPaths, port: int, idle_s: float) -> int:
    """Run the server until it is idle, told to stop, or dies; always stop it and clean up the state."""
    since = time.time()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _raise_stop)
    service = server_service(paths, port)
    warm = WarmStart(paths)
    every = min(5.0, max(0.2, idle_s / 5))
    code = 0
    try:
        service.start()
        assert service.proc is not None
        _record_server(paths, service.proc.pid)
        _say(f"prefect server pid {service.proc.pid} on http://{HOST}:{port}; stops after "
             f"{describe_idle(idle_s / 60)} without runs")
        while True:
            time.sleep(every if warm.running or not warm.enabled else min(every, 0.5))
            warm.tend(f"http://{HOST}:{port}")
            if service.proc.poll() is not None:
                _say(f"the prefect server exited with code {service.proc.returncode}; cleaning up")
                code = 1
                break
            if _retire_if_idle(paths, service, since, idle_s):
                break
    except _Stop as exc:
        _say(f"{exc}: stopping the server")
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # the orderly stop must not be cut short
        warm.stop()
        with locked(paths):
            if service.proc is not None:
                stop(service, grace=STOP_GRACE_S)
            _forget(paths)
        _say("stopped")
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: `python -m flows.server_supervisor --state-dir D --port P --idle-minutes M`."""
    parser = argparse.ArgumentParser(prog="python -m flows.server_supervisor", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--idle-minutes", required=True, type=float)
    args = parser.parse_args(argv)
    return supervise(ServerPaths(args.state_dir), args.port, args.idle_minutes * 60)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
