"""`fuseflow server status|stop`: what the project's background Prefect server is doing, and stopping it."""
from __future__ import annotations

import time
from pathlib import Path

from typing import Any, Optional

from flows.local_server import (DEFAULT_IDLE_MINUTES, ServerPaths, describe_idle, last_activity, live_leases, locked,
                                read_state, retire, running, terminate)

#: the supervisor stops the server (SIGTERM, then SIGKILL after 10 s) before it exits
STOP_WAIT_S = 30.0


def status_lines(project_dir: Path | str) -> list[str]:
    """The server's address, pids, idle time and live runs; or that there is none."""
    paths = ServerPaths.of(project_dir)
    state = read_state(paths)
    if state is None or not running(state.get("supervisor")):
        stale = " (a stale server.json is left; the next run or `fuseflow server stop` removes it)" if state else ""
        return [f"no background Prefect server for {paths.root.parent.parent}{stale}"]
    server = state.get("server") or {}
    started = state["supervisor"].get("started") or time.time()
    idle_s = time.time() - last_activity(paths, started)
    leases = live_leases(paths)
    minutes = float(state.get("idle_minutes", DEFAULT_IDLE_MINUTES))
    return [f"background Prefect server at {state['url']} (UI and API; API {state['api_url']})",
            f"supervisor pid {state['supervisor']['pid']}, server pid {server.get('pid', '(starting)')}, "
            f"started {state.get('started_at', '?')}",
            f"runs using it now: {len(leases)}" + (f" (pids {', '.join(map(str, leases))})" if leases else "")
            + f"; idle {describe_idle(idle_s / 60)} (it stops after {describe_idle(minutes)} idle)",
            _warm_start_line(paths), f"log: {state.get('log')}; state: {paths.state}"]


def _warm_start_line(paths: ServerPaths) -> str:
    from flows.warm_client import SOCKET_NAME

    socket = paths.root / SOCKET_NAME
    if socket.exists():
        return f"warm start: listening on {socket} (runs fork from it)"
    return "warm start: none (it starts once the server answers; FUSEFLOW_WARM_START=0 turns it off)"


def stop_server(project_dir: Path | str) -> str:
    """Stop the server (SIGTERM to its supervisor, which stops the server and cleans up; SIGKILL to what is left)."""
    paths = ServerPaths.of(project_dir)
    state = read_state(paths)
    if state is None or not running(state.get("supervisor")):
        removed = _retire_if_still(paths, state.get("supervisor") if state else None)
        return "no background Prefect server running" + (" (removed its stale state)" if removed else "")
    supervisor, server = state["supervisor"], state.get("server")
    terminate(supervisor, grace=STOP_WAIT_S)  # not under the lock: the supervisor takes it to clean up
    if running(server):
        terminate(server)
    _retire_if_still(paths, supervisor)  # what a supervisor that had to be killed could not remove
    return (f"stopped the background Prefect server at {state['url']} (supervisor pid {supervisor['pid']}, "
            f"server pid {(server or {}).get('pid', '-')})")


def _retire_if_still(paths: ServerPaths, supervisor: Optional[dict[str, Any]]) -> bool:
    """Under the start lock: remove the state when it still names `supervisor` and that one is gone (a server a
    run started meanwhile is left alone); True when something was removed."""
    with locked(paths):
        state = read_state(paths)
        if state is None or state.get("supervisor") != supervisor or running(supervisor):
            return False
        retire(paths, state)
        return True
