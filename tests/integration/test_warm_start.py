"""The warm start's hand-off against a real pre-imported Python (`python -m flows.warm_start`, started here without a
supervisor): the forked command uses the client's folder, environment and stdio and returns its exit code; a client
with other installed packages is declined and the stale server exits; another interpreter, or other start-up
settings (hash seed, locale, BLAS threads), are declined."""
from __future__ import annotations

import array
import contextlib
import json
import os
import re
import signal
import socket
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from flows import warm_client
from flows.cli import warm_start_handoff
from flows.warm_client import socket_path
from tests.support.helpers import TINY_IRIS, write_pipelines
from tests.support.servers import START_TIMEOUT, base_env, wait_for

LISTENING = re.compile(r"fuseflow warm start (\d+): imported in [\d.]+ s.*; listening on")


class WarmServer:
    """`python -m flows.warm_start` for a project folder, its output in `warm.log`."""

    def __init__(self, folder: Path) -> None:
        self.socket = socket_path(folder)
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.log = folder / "warm.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "flows.warm_start", "--socket", str(self.socket)],
                                         env=base_env(folder / "prefect-home"), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: LISTENING.search(self.text()), START_TIMEOUT, "the warm start", self.proc, self.log)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warm")
    write_pipelines(folder, TINY_IRIS)
    server = WarmServer(folder)
    yield folder, server
    server.stop()


def test_the_forked_command_runs_in_the_clients_folder_with_its_environment_and_stdio(warm, monkeypatch, capfd):
    folder, server = warm
    monkeypatch.chdir(folder)
    monkeypatch.setenv("FUSEFLOW_PREFECT_SERVER", "bogus")  # read by the forked command: a config error, exit 2
    code = warm_start_handoff(["run", "iris-tiny"])  # the relative pipelines.yaml: found from the client's folder
    assert code == 2
    out, err = capfd.readouterr()
    assert "FUSEFLOW_PREFECT_SERVER='bogus': expected one of: background, temporary" in err, (out, err)
    assert re.search(r"forked pid \d+ for `fuseflow run iris-tiny` in " + re.escape(str(folder)), server.text())

    monkeypatch.setenv("FUSEFLOW_PREFECT_SERVER", "temporary")
    assert warm_start_handoff(["run", "no-such-pipeline"]) == 2
    assert "no-such-pipeline" in capfd.readouterr().err
    assert server.text().count("forked pid") == 2 and server.proc.poll() is None


def test_commands_that_do_not_hand_off_and_a_switched_offwarm_start_handoff_run_here(warm, monkeypatch):
    folder, server = warm
    monkeypatch.chdir(folder)
    assert warm_start_handoff(["validate"]) is None
    assert warm_start_handoff(["run", "--help"]) is None
    monkeypatch.setenv(warm_client.ENV, "0")
    assert warm_start_handoff(["run", "iris-tiny"]) is None
    monkeypatch.delenv(warm_client.ENV)
    assert warm_start_handoff(["run", "iris-tiny", "--file", str(folder / "elsewhere" / "pipelines.yaml")]) is None
    assert "forked pid" not in server.text().split("`fuseflow run no-such-pipeline`")[-1]


def test_a_client_with_other_start_up_settings_is_declined(warm, monkeypatch, capfd):
    folder, server = warm
    monkeypatch.chdir(folder)
    monkeypatch.setenv("PYTHONHASHSEED", "12345")  # a fork would keep the server's string hashes
    monkeypatch.setenv("FUSEFLOW_PREFECT_SERVER", "bogus")
    assert warm_start_handoff(["run", "iris-tiny"]) is None
    assert "declined a run: it started with other PYTHONHASHSEED" in server.text() and server.proc.poll() is None
    assert "bogus" not in capfd.readouterr().err  # nothing of the command ran there


def test_a_malformed_request_is_declined_and_the_server_goes_on(warm):
    folder, server = warm
    from flows.warm_start import STARTUP_ENV

    startup = {name: os.environ[name] for name in STARTUP_ENV if name in os.environ}
    accepted_but_no_argv = json.dumps({"key": warm_client.code_key(), "env": startup}).encode() + b"\n"
    for request in (b"not json\n", accepted_but_no_argv, b"[1, 2]\n"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(server.socket))
            sock.sendmsg([b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
            sock.sendall(request)
            answer = sock.makefile("rb").readline()
        assert b"refused" in answer, answer
    assert server.proc.poll() is None and server.text().count("a malformed request") == 2
    assert "a request failed: " in server.text()  # the line that is not JSON


def test_another_interpreter_is_declined_and_changed_packages_retire_the_server(tmp_path, monkeypatch):
    write_pipelines(tmp_path, TINY_IRIS)
    server = WarmServer(tmp_path)
    monkeypatch.chdir(tmp_path)
    try:
        monkeypatch.setattr(warm_client, "code_key", lambda: "/another/python|3.11")
        assert warm_start_handoff(["run", "iris-tiny"]) is None
        assert "declined a run: another Python interpreter" in server.text() and server.proc.poll() is None

        monkeypatch.setattr(warm_client, "code_key", lambda: f"{sys.executable}|packages installed since")
        assert warm_start_handoff(["run", "iris-tiny"]) is None
        assert server.proc.wait(timeout=30) == 0  # the supervisor starts a fresh one with the new packages
        assert "declined a run: stale: the installed packages changed" in server.text()
        assert not server.socket.exists()
        assert warm_start_handoff(["run", "iris-tiny"]) is None  # nothing listens: the command runs here
    finally:
        server.stop()


def _listen_as_nobody(path: Path, received: Path, ready_w: int) -> None:
    """In a forked child: become user 65534, listen on `path`, record every byte a client sends."""
    try:
        os.setgid(65534)
        os.setuid(65534)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.listen(1)
        os.write(ready_w, b"1")
        conn, _ = sock.accept()
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        received.write_bytes(data)
    finally:
        os._exit(0)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to listen as another user")
def test_a_socket_of_another_user_gets_nothing(monkeypatch):
    folder = Path(tempfile.mkdtemp(prefix="fuseflow-planted-"))  # pytest's own folders are closed to other users
    write_pipelines(folder, TINY_IRIS)
    path = socket_path(folder)
    path.parent.mkdir(parents=True)
    for each in (folder, path.parent.parent, path.parent):
        os.chmod(each, 0o777)
    received = folder / "received"
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _listen_as_nobody(path, received, ready_w)
    try:
        assert os.read(ready_r, 1) == b"1"
        monkeypatch.chdir(folder)
        monkeypatch.setenv("FUSEFLOW_SECRET_TOKEN", "do-not-send")
        assert warm_start_handoff(["run", "iris-tiny"]) is None
        assert os.waitpid(pid, 0)[1] == 0
        assert received.read_bytes() == b""  # not one byte: no environment, no file descriptors
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for fd in (ready_r, ready_w):
            os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
