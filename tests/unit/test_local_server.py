"""The background Prefect server's bookkeeping (flows/local_server.py), with fake supervisors (`sleep` processes):
stale and reused-pid state files, the start lock, leases, the idle decision, and how `choose_prefect_api` picks
between a profile's server, Prefect's loaded settings, `temporary` and `background`."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from flows import local_server
from flows.local_server import (BackgroundServer, ServerPaths, ensure_server, ident, idle_expired, idle_minutes,
                                last_activity, live_leases, running)
from tasks.errors import ConfigError


@pytest.fixture
def sleepers():
    """Start `sleep` processes (fake supervisors and servers, each in its own session); all killed by PID after."""
    started: list[subprocess.Popen] = []

    def launch(*_args: object) -> subprocess.Popen:
        proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
        started.append(proc)
        return proc

    launch.started = started  # type: ignore[attr-defined]
    yield launch
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _write_state(paths: ServerPaths, supervisor: dict, server: dict | None = None) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.state.write_text(json.dumps({"url": "http://127.0.0.1:1", "api_url": "http://127.0.0.1:1/api", "port": 1,
                                       "supervisor": supervisor, "server": server, "log": str(paths.log),
                                       "idle_minutes": 30}))


def test_a_state_file_whose_supervisor_is_dead_is_replaced(tmp_path, sleepers):
    paths = ServerPaths.of(tmp_path)
    _write_state(paths, {"pid": _dead_pid(), "started": time.time() - 5})
    server = ensure_server(tmp_path, launch=sleepers)
    assert server.started_here and len(sleepers.started) == 1
    state = json.loads(paths.state.read_text())
    assert state["supervisor"]["pid"] == sleepers.started[0].pid
    assert state["api_url"] == f"http://127.0.0.1:{state['port']}/api" and state["port"] != 1
    assert "started by this run" in server.description and "30 min idle" in server.description


def test_a_state_file_whose_pid_was_reused_is_replaced_and_that_process_left_alone(tmp_path, sleepers):
    """Same pid, other start time: another process now has the pid (here: this test). It is neither reused nor
    signalled, though the stale file names it as the server too."""
    me = ident(os.getpid())
    impostor = {"pid": me["pid"], "started": me["started"] - 1000}
    assert not running(impostor) and running(me)
    paths = ServerPaths.of(tmp_path)
    _write_state(paths, impostor, server=impostor)
    server = ensure_server(tmp_path, launch=sleepers)
    assert server.started_here
    assert json.loads(paths.state.read_text())["supervisor"]["pid"] == sleepers.started[0].pid


def test_a_live_supervisor_is_reused(tmp_path, sleepers):
    live = sleepers()
    paths = ServerPaths.of(tmp_path)
    _write_state(paths, ident(live.pid))
    server = ensure_server(tmp_path, launch=sleepers)
    assert not server.started_here and len(sleepers.started) == 1
    assert "already running" in server.description and f"pid {live.pid}" in server.description
    assert paths.last_used.exists()  # the reusing run marked activity under the lock


def test_the_server_a_dead_supervisor_left_is_stopped(tmp_path, sleepers):
    orphan = sleepers()
    paths = ServerPaths.of(tmp_path)
    _write_state(paths, {"pid": _dead_pid(), "started": time.time() - 5}, server=ident(orphan.pid))
    ensure_server(tmp_path, launch=sleepers)
    assert orphan.wait(timeout=15) == -signal.SIGTERM


def test_concurrent_first_starts_launch_one_supervisor(tmp_path, sleepers):
    def slow_launch(*args: object) -> subprocess.Popen:
        time.sleep(0.3)  # a launch that takes a while: the others must wait on the lock, then reuse
        return sleepers(*args)

    results: list[BackgroundServer] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_server(tmp_path, launch=slow_launch)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(sleepers.started) == 1 and len(results) == 4
    assert sorted(r.started_here for r in results) == [False, False, False, True]
    assert {r.state["supervisor"]["pid"] for r in results} == {sleepers.started[0].pid}


def test_leases_of_gone_processes_do_not_count(tmp_path, sleepers):
    paths = ServerPaths.of(tmp_path)
    paths.runs.mkdir(parents=True)
    me = ident(os.getpid())
    (paths.runs / f"{_dead_pid()}-{time.time():.3f}").touch()
    (paths.runs / f"{me['pid']}-{me['started'] - 1000:.3f}").touch()  # this pid, but another process's lease
    (paths.runs / "not-a-lease").touch()
    assert live_leases(paths) == []
    server = BackgroundServer(paths, {"api_url": "x", "log": "y"}, started_here=False)
    with pytest.raises(RuntimeError), server.lease():
        assert live_leases(paths) == [os.getpid()]
        raise RuntimeError("the run fails")
    assert live_leases(paths, prune=True) == []
    assert list(paths.runs.iterdir()) == []  # the run's own lease released, the dead ones pruned


def test_the_idle_decision():
    assert idle_expired(last_used=100.0, now=100.0 + 1800, leases=0, idle_s=1800)
    assert not idle_expired(last_used=100.0, now=100.0 + 1799, leases=0, idle_s=1800)
    assert not idle_expired(last_used=100.0, now=100.0 + 99999, leases=1, idle_s=1800)  # a run in progress


def test_activity_is_the_last_used_mark_but_not_before_the_supervisor_started(tmp_path):
    paths = ServerPaths.of(tmp_path)
    assert last_activity(paths, since=50.0) == 50.0
    local_server.touch(paths.last_used)
    os.utime(paths.last_used, (200.0, 200.0))
    assert last_activity(paths, since=50.0) == 200.0
    assert last_activity(paths, since=300.0) == 300.0


@pytest.mark.parametrize("raw, expected", [("", 30.0), ("0.05", 0.05), (" 5 ", 5.0)])
def test_idle_minutes(monkeypatch, raw, expected):
    monkeypatch.setenv("FUSEFLOW_PREFECT_SERVER_IDLE_MINUTES", raw)
    assert idle_minutes() == expected


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "nan", "inf"])
def test_a_bad_idle_time_is_a_config_error(monkeypatch, raw):
    monkeypatch.setenv("FUSEFLOW_PREFECT_SERVER_IDLE_MINUTES", raw)
    with pytest.raises(ConfigError, match="expected a number of minutes above 0"):
        idle_minutes()


def test_waiting_for_a_server_whose_supervisor_died_fails_naming_the_log(tmp_path):
    from flows.server import PrefectApiChoice, PrefectServerDown

    dead = subprocess.Popen(["true"])
    dead.wait()
    log = tmp_path / "server.log"
    server = BackgroundServer(ServerPaths.of(tmp_path), {"api_url": "http://127.0.0.1:9/api", "log": str(log)},
                              started_here=True, proc=dead)
    choice = PrefectApiChoice("d", {"PREFECT_API_URL": server.api_url}, server)
    with pytest.raises(PrefectServerDown, match=re.escape(f"stopped before it answered; see {log}")):
        choice.wait_ready(timeout=5)
    server.proc = None
    server.state["supervisor"] = ident(os.getpid())  # alive, never answers: the timeout
    with pytest.raises(PrefectServerDown, match=re.escape(f"did not answer within 1 s; see {log}")):
        choice.wait_ready(timeout=1)
    PrefectApiChoice("no background server").wait_ready()  # a no-op for the other choices


# --- which API choose_prefect_api picks when neither PREFECT_API_URL nor `fuseflow up` names one -------------------

@pytest.fixture
def no_configured_api(project_dir, monkeypatch, tmp_path):
    """No PREFECT_API_URL, an empty PREFECT_HOME, no Prefect settings loaded; ensure_server replaced by a spy."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.delitem(sys.modules, "prefect.settings", raising=False)
    calls: list[object] = []

    def fake_ensure(project: object) -> BackgroundServer:
        calls.append(project)
        state = {"url": "http://127.0.0.1:7", "api_url": "http://127.0.0.1:7/api", "log": "l", "idle_minutes": 30,
                 "supervisor": {"pid": 1, "started": 0}}
        return BackgroundServer(ServerPaths.of(project_dir), state, started_here=True)

    monkeypatch.setattr(local_server, "ensure_server", fake_ensure)
    return calls


def _write_profiles(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "profiles.toml").write_text(text)


PROFILES = '''active = "remote"
[profiles.remote]
PREFECT_API_URL = "http://127.0.0.1:4321/api"
[profiles.local]
PREFECT_LOGGING_LEVEL = "INFO"
'''


def test_a_profile_with_an_api_url_keeps_prefects_own_choice(no_configured_api, monkeypatch, tmp_path):
    from flows.server import choose_prefect_api

    monkeypatch.setenv("FUSEFLOW_PREFECT_SERVER", "background")
    _write_profiles(tmp_path / "prefect-home", PROFILES)
    choice = choose_prefect_api()
    assert "http://127.0.0.1:4321/api" in choice.description and "profile" in choice.description
    assert choice.env == {} and choice.server is None and no_configured_api == []
    monkeypatch.setenv("PREFECT_PROFILE", "local")  # the env names the active profile: it sets no url
    assert choose_prefect_api().server is not None and len(no_configured_api) == 1


def test_a_broken_profiles_file_chooses_nothing(no_configured_api, monkeypatch, tmp_path):
    from flows.server import profile_api_url

    _write_profiles(tmp_path / "prefect-home", "this is [not toml")
    assert profile_api_url() is None
    _write_profiles(tmp_path / "prefect-home", 'profiles = 3\nactive = "x"\n')
    assert profile_api_url() is None


def test_prefect_settings_loaded_in_process_keep_prefects_own_choice(no_configured_api, monkeypatch):
    """As under `prefect_test_harness`: Prefect is imported and its current settings name the harness's server."""
    from flows.server import choose_prefect_api

    monkeypatch.setenv("FUSEFLOW_PREFECT_SERVER", "background")
    settings = types.SimpleNamespace(api=types.SimpleNamespace(url="http://127.0.0.1:5555/api"))
    fake = types.ModuleType("prefect.settings")
    fake.get_current_settings = lambda: settings  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "prefect.settings", fake)
    choice = choose_prefect_api()
    assert "http://127.0.0.1:5555/api" in choice.description and choice.env == {} and no_configured_api == []
    settings.api.url = None  # imported, but no url: the background server
    assert choose_prefect_api().server is not None


def test_background_is_the_default_and_temporary_keeps_the_temporary_server(no_configured_api, monkeypatch,
                                                                            project_dir):
    from flows.server import choose_prefect_api

    monkeypatch.delenv("FUSEFLOW_PREFECT_SERVER", raising=False)
    choice = choose_prefect_api(project_dir)
    assert choice.env == {"PREFECT_API_URL": "http://127.0.0.1:7/api"} and choice.server is not None
    assert choice.description.startswith("Prefect server: background server at http://127.0.0.1:7 (UI and API; ")
    assert no_configured_api == [project_dir.resolve()]
    monkeypatch.setenv("FUSEFLOW_PREFECT_SERVER", "Temporary")
    choice = choose_prefect_api(project_dir)
    assert "temporary local server" in choice.description and choice.env == {} and choice.server is None
    assert len(no_configured_api) == 1


def test_an_unknown_server_mode_is_one_line_and_exit_2(no_configured_api, monkeypatch, project_dir, capsys):
    from flows.cli import main
    from flows.server import choose_prefect_api
    from tests.support.helpers import write_pipelines

    monkeypatch.setenv("FUSEFLOW_PREFECT_SERVER", "backgroud")
    with pytest.raises(ConfigError, match="expected one of: background, temporary"):
        choose_prefect_api()
    write_pipelines(project_dir)
    assert main(["run", "iris-tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: FUSEFLOW_PREFECT_SERVER='backgroud': expected one of: background, temporary"]
    assert no_configured_api == []


def test_server_commands_with_no_server(project_dir, capsys):
    from flows.cli import main

    assert main(["server", "status"]) == 0
    assert "no background Prefect server for" in capsys.readouterr().out
    assert main(["server", "stop", "--file", str(project_dir / "pipelines.yaml")]) == 0
    assert capsys.readouterr().out.strip() == "no background Prefect server running"
    paths = ServerPaths.of(project_dir)
    _write_state(paths, {"pid": _dead_pid(), "started": time.time() - 5})
    assert main(["server", "status"]) == 0 and "stale server.json" in capsys.readouterr().out
    assert main(["server", "stop"]) == 0
    assert "removed its stale state" in capsys.readouterr().out and not paths.state.exists()
