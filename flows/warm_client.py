"""The client side of the warm start: `fuseflow run` hands its command to the project's pre-imported Python
(flows/warm_start.py, started beside the background Prefect server) and waits for it, instead of importing MLflow,
Prefect and pandas again (~2.5 s of every run here).

The hand-off passes this process' argv, folder, environment, umask, sys.path and its stdin/stdout/stderr (the file
descriptors themselves, over a Unix socket), so the forked run reads and prints exactly as this process would. This
process stays in front: it forwards the signals it gets (Ctrl-C, SIGTERM, SIGHUP) to the run, exits with the run's
exit code, and when it is killed (kill -9) the run kills itself at once. Nothing here imports more than the standard
library: it runs before every other import of the command.
"""
from __future__ import annotations

import array
import json
import os
import signal
import socket
import struct
import sys
import sysconfig
from pathlib import Path
from typing import Any, Optional, Sequence

from tasks.paths import PREFECT_SERVER_DIR

#: FUSEFLOW_WARM_START=0 (or off, false, no) runs every command in its own fresh interpreter
ENV = "FUSEFLOW_WARM_START"
SOCKET_NAME = "warm.sock"
#: AF_UNIX paths longer than this do not fit `sockaddr_un` on Linux and macOS: no warm start for such folders
MAX_SOCKET_PATH = 100
CONNECT_TIMEOUT_S = 2.0
#: the pre-imported Python answers within milliseconds; on a loaded machine, allow it a few seconds
ANSWER_TIMEOUT_S = 15.0
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

#: set in a forked run: the line its log shows (which process it came from); None in a fresh interpreter
forked_from: Optional[str] = None


def disabled() -> bool:
    """True when FUSEFLOW_WARM_START turns the warm start off, or this system lacks what it needs (fork, Unix
    sockets with the peer's credentials: Linux)."""
    supported = hasattr(os, "fork") and hasattr(socket, "AF_UNIX") and hasattr(socket, "SO_PEERCRED")
    return not supported or os.environ.get(ENV, "").strip().lower() in ("0", "off", "false", "no")


def socket_path(project_dir: Path | str) -> Path:
    """Where the project's pre-imported Python listens (beside the background server's state)."""
    return Path(project_dir).resolve() / PREFECT_SERVER_DIR / SOCKET_NAME


def code_key() -> str:
    """What the pre-imported modules depend on: this interpreter and the folders packages are installed in (their
    modification times change with every `pip install`, upgrade or removal). A run whose key differs from the
    pre-imported Python's is not handed off, and that Python is replaced."""
    parts = [sys.executable, sys.version]
    for folder in sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}):
        try:
            parts.append(f"{folder}:{os.stat(folder).st_mtime_ns}")
        except OSError:
            parts.append(f"{folder}:-")
    return "|".join(parts)


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a connected Unix socket (SO_PEERCRED, Linux)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    """One JSON line."""
    sock.sendall(json.dumps(message).encode() + b"\n")


def read_message(stream: Any) -> Optional[dict[str, Any]]:
    """The next JSON line of a socket's file object; None at the end of the stream."""
    line = stream.readline()
    return json.loads(line) if line else None


def handoff(argv: Sequence[str], project_dir: Path | str, started_at: float) -> Optional[int]:
    """Run the command `argv` (of the project in `project_dir`) in the project's pre-imported Python and return its
    exit code; None when there is no such Python (or it declined): the caller then runs the command itself.
    `started_at`: when this process started (the run's `startup` phase counts from it)."""
    if disabled():
        return None
    path = socket_path(project_dir)
    if len(str(path)) > MAX_SOCKET_PATH or not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.connect(str(path))
        if peer_uid(sock) != os.getuid():  # a socket planted by another user would get this environment
            sock.close()
            return None
        sock.settimeout(ANSWER_TIMEOUT_S)
        sock.sendmsg([b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
        send_message(sock, {"key": code_key(), "argv": list(sys.argv[:1]) + list(argv), "cwd": os.getcwd(),
                            "env": dict(os.environ), "umask": _umask(), "sys_path": list(sys.path),
                            "started_at": started_at})
        stream = sock.makefile("rb")
        answer = read_message(stream)
    except (OSError, ValueError):  # no listener (a stale socket file), a timeout, a garbled answer
        sock.close()
        return None
    if not answer or "pid" not in answer:  # declined: another interpreter, a stale one, or it could not fork
        sock.close()
        return None
    sock.settimeout(None)
    return _wait(sock, stream, int(answer["pid"]))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _wait(sock: socket.socket, stream: Any, pid: int) -> int:
    """Forward signals to the forked run until it reports its exit code."""
    forwarded: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        forwarded.append(signum)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    try:
        while True:
            message = read_message(stream)
            if message is None:
                break
            if "code" in message:
                return int(message["code"])
    except (OSError, ValueError):
        pass
    finally:
        sock.close()
    # the run ended without a word: killed by a signal (this process' forwarded one, or another's)
    if forwarded:
        return 128 + forwarded[-1]
    print(f"error: the run's process {pid} ended without an exit status (killed?)", file=sys.stderr)
    return 128 + signal.SIGKILL
