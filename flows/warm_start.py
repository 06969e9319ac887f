"""The project's pre-imported Python (`python -m flows.warm_start --socket PATH`, started and stopped by the
background server's supervisor): it imports MLflow, Prefect, pandas and the rest of what every run needs once, then
forks one child per `fuseflow run` that hands its command over (flows/warm_client.py).

The child becomes that command's process: it takes the client's stdin/stdout/stderr, folder, environment, umask
and sys.path, leaves this process' session (stopping this server never stops a run), re-reads Prefect's settings and
logging from the new environment (Prefect reads them when it is imported), and runs `flows.cli.main`. fuseflow's own
modules are imported in the child, never here, so an edited checkout runs its current code. When the client goes
away (kill -9), the child kills itself; its exit code goes back to the client.
"""
from __future__ import annotations

import argparse
import array
import atexit
import contextlib
import io
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from flows.warm_client import code_key, peer_uid, read_message, send_message

#: what every run imports and a fork can share; not torch (its thread pools must not cross a fork), not matplotlib
#: (it reads its rc files and backend from the environment at import) and not fuseflow's own modules (they may
#: change between runs)
PRELOAD = ("numpy", "pandas", "yaml", "pydantic", "rich.console", "rich.progress", "rich.table", "sqlalchemy",
           "sqlalchemy.orm", "fastapi", "httpx", "mlflow", "mlflow.tracking", "mlflow.artifacts",
           "mlflow.store.tracking.sqlalchemy_store", "mlflow.pyfunc", "prefect", "prefect.flows", "prefect.tasks",
           "prefect.context", "prefect.client.orchestration", "prefect.cache_policies", "prefect.artifacts",
           "sklearn.metrics")
#: what the interpreter or a preloaded library reads once, at start-up or import (hash seed, warnings, locale,
#: BLAS threads): a run whose value differs from this server's is declined and starts the usual way
STARTUP_ENV = ("PYTHONHASHSEED", "PYTHONWARNINGS", "PYTHONOPTIMIZE", "PYTHONDEVMODE", "PYTHONUTF8",
               "PYTHONFAULTHANDLER", "PYTHONTRACEMALLOC", "PYTHONINTMAXSTRDIGITS", "PYTHONNOUSERSITE",
               "PYTHONSAFEPATH", "LANG", "LC_ALL", "LC_CTYPE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS", "NUMEXPR_MAX_THREADS")
REQUEST_TIMEOUT_S = 10.0
#: how often the server looks whether its supervisor is still there
PARENT_CHECK_S = 1.0
FD_COUNT = 3
#: what a client sends (flows/warm_client.py `handoff`), with its types
REQUEST_FIELDS = {"key": str, "argv": list, "cwd": str, "env": dict, "umask": int, "sys_path": list,
                  "started_at": (int, float)}

#: filled in a forked child; read by `_report_exit`, registered before any preload so that it runs last at exit
_exit_report: dict[str, Any] = {}


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} fuseflow warm start {os.getpid()}: {message}", flush=True)


def _report_exit() -> None:
    """At a forked run's exit, after every other exit handler: tell the client the exit code, then leave without the
    interpreter's module teardown (as `flows.cli.entry` does)."""
    sock = _exit_report.get("socket")
    if sock is None:  # the server itself, or a child that failed before it took over: exit normally
        return
    code = int(_exit_report.get("code", 1))
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(OSError):
        send_message(sock, {"code": code})
    os._exit(code)


def preload() -> list[str]:
    """Import PRELOAD; the names that failed (a missing optional package) are left for the child to import."""
    failed = []
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - whatever fails here fails the same way in the run, with its message
            failed.append(name)
    return failed


class _Stop(Exception):
    """SIGTERM/SIGHUP/SIGINT: stop listening (forked runs go on)."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop(signal.Signals(signum).name)


class WarmServer:
    """The listening socket and the fork per request."""

    def __init__(self, path: Path) -> None:
        self.path, self.pid, self.key = path, os.getpid(), code_key()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.served = 0

    def bind(self) -> None:
        """Listen on `path`, readable by this user only (a request runs code as this user)."""
        self.path.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            self.listener.bind(str(self.path))
        finally:
            os.umask(old)
        self.listener.listen(16)
        self.inode = os.stat(self.path).st_ino

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the select: children are reaped
        parent = os.getppid()
        while True:
            ready, _, _ = select.select([self.listener, self.wake_r], [], [], PARENT_CHECK_S)
            if os.getppid() != parent:  # the supervisor is gone (killed): a new one starts its own
                raise _Stop(f"the supervisor {parent} is gone")
            if self.wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 512)
            self._reap()
            if self.listener in ready:
                conn, _ = self.listener.accept()
                with conn:
                    self._handle(conn)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(REQUEST_TIMEOUT_S)
        try:
            uid = peer_uid(conn)
            fds = _receive_fds(conn)
        except (OSError, ValueError) as exc:
            _say(f"a request failed before it was read: {exc}")
            return
        try:
            request = read_message(conn.makefile("rb"))
            refusal = self._refusal(uid, fds, request)
            if refusal:
                _say(f"declined a run: {refusal}")
                send_message(conn, {"refused": refusal})
                if refusal.startswith("stale"):
                    raise _Stop("the installed packages changed")
                return
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            pid = os.fork()
            if pid == 0:
                self._become(conn, fds, request)  # never returns
            self.served += 1
            _say(f"forked pid {pid} for `fuseflow {' '.join(request['argv'][1:])}` in {request['cwd']}")
        except (OSError, ValueError) as exc:
            _say(f"a request failed: {exc}")
            with contextlib.suppress(OSError):
                send_message(conn, {"refused": str(exc)})
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _refusal(self, uid: int, fds: list[int], request: Optional[dict[str, Any]]) -> Optional[str]:
        if uid != os.getuid():
            return f"uid {uid} is not this server's"
        if len(fds) != FD_COUNT or not isinstance(request, dict) or \
                any(not isinstance(request.get(key), kind) for key, kind in REQUEST_FIELDS.items()):
            return "a malformed request"
        if request["key"] != self.key:
            same_python = request["key"].split("|", 1)[0] == sys.executable
            return ("stale: the installed packages changed since it started" if same_python else
                    "another Python interpreter")
        differ = [name for name in STARTUP_ENV if request["env"].get(name) != os.environ.get(name)]
        if differ:
            return f"it started with other {', '.join(differ)}"
        if threading.active_count() != 1:  # a fork copies one thread: never fork with others running
            return f"{threading.active_count()} threads are running here"
        return None

    def _become(self, conn: socket.socket, fds: list[int], request: dict[str, Any]) -> None:
        """In the child: become the client's command, run it, and exit (through the exit handlers)."""
        code = 1
        conn = conn.dup()  # the server's loop closes its own as this child unwinds to exit
        try:
            os.setsid()  # out of this server's session and process group: stopping the server leaves runs alone
            signal.set_wakeup_fd(-1)
            for fd in (self.wake_r, self.wake_w):
                os.close(fd)
            self.listener.close()
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            _adopt(request, fds)
            conn.settimeout(None)
            send_message(conn, {"pid": os.getpid()})
            threading.Thread(target=_die_with_client, args=(conn,), name="fuseflow-warm-client", daemon=True).start()
            _exit_report["socket"] = conn
            code = _run_command(request)
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:  # noqa: BLE001 - the traceback, as a fresh interpreter would print it
            import traceback

            traceback.print_exc()
            code = 1
        _exit_report["code"] = code
        raise SystemExit(code)

    def close(self) -> None:
        """Stop listening; remove the socket file when it is still this server's."""
        self.listener.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.inode:
                self.path.unlink()


def _receive_fds(conn: socket.socket) -> list[int]:
    fds = array.array("i")
    _, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(FD_COUNT * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    return list(fds)


def _adopt(request: dict[str, Any], fds: list[int]) -> None:
    """Take the client's stdio, folder, environment, umask, argv and sys.path; re-read Prefect's settings."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.chdir(request["cwd"])
    os.umask(int(request["umask"]))
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    sys.path[:] = list(request["sys_path"])
    _reopen_stdio()
    import flows.warm_client as client

    client.forked_from = (f"Warm start: forked from the project's pre-imported Python (pid {os.getppid()}), "
                          f"which skips ~2.5 s of imports; {client.ENV}=0 runs without it")
    if "prefect.context" in sys.modules:  # Prefect read its settings and logging set-up at import, in the server
        import prefect.context
        import prefect.logging.configuration

        prefect.context.refresh_global_settings_context()
        prefect.logging.configuration.setup_logging(incremental=False)
    if "numpy" in sys.modules:  # a fork copies the global generator's state; `random` reseeds itself at fork
        sys.modules["numpy"].random.seed()
    from tasks.tracking import phases

    phases.set_process_started_at(float(request["started_at"]))


def _reopen_stdio() -> None:
    """New sys.stdin/stdout/stderr on fds 0-2, buffered as a fresh interpreter would buffer them there."""
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    encoding = os.environ.get("PYTHONIOENCODING", "").split(":")[0] or sys.stdout.encoding

    def text(fd: int, mode: str, **kwargs: Any) -> io.TextIOWrapper:
        binary = io.open(fd, mode, buffering=-1, closefd=False)  # noqa: SIM115 - the process' own stdio
        return io.TextIOWrapper(binary, encoding=encoding, **kwargs)  # type: ignore[arg-type]

    sys.stdin = sys.__stdin__ = text(0, "rb")
    sys.stdout = sys.__stdout__ = text(1, "wb", line_buffering=os.isatty(1) or unbuffered,
                                       write_through=unbuffered)
    sys.stderr = sys.__stderr__ = text(2, "wb", errors="backslashreplace", line_buffering=True)


def _die_with_client(conn: socket.socket) -> None:
    """The client went away (killed): so does the run, as a process killed with its terminal would."""
    try:
        while conn.recv(64):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def _run_command(request: dict[str, Any]) -> int:
    from flows.cli import main

    return main(list(request["argv"][1:]))


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: `python -m flows.warm_start --socket PATH`."""
    parser = argparse.ArgumentParser(prog="python -m flows.warm_start", description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, type=Path)
    args = parser.parse_args(argv)
    atexit.register(_report_exit)  # before any preload, so that it runs after every handler they register
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _raise_stop)
    began = time.monotonic()
    failed = preload()
    server = WarmServer(args.socket)
    try:
        server.bind()
        _say(f"imported in {time.monotonic() - began:.1f} s" + (f" (not: {', '.join(failed)})" if failed else "") +
             f"; listening on {args.socket}")
        server.serve()
    except _Stop as exc:
        if os.getpid() == server.pid:
            _say(f"{exc}: stopping after {server.served} run(s)")
    finally:
        if os.getpid() == server.pid:
            server.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
