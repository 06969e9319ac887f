"""Which Prefect API `fuseflow run` uses: PREFECT_API_URL, else the server of `fuseflow up`, else Prefect's own
(a profile's server, or the temporary or background server: see test_local_server.py)."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.support.helpers import write_pipelines


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server():
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


def _write_stack(folder, url: str) -> None:
    (folder / ".fuseflow").mkdir(exist_ok=True)
    (folder / ".fuseflow" / "stack.json").write_text(json.dumps({"prefect_api_url": url}))


def test_a_running_stack_server_is_used(project_dir, health_server, monkeypatch):
    from flows.server import choose_prefect_api

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    _write_stack(project_dir, health_server)
    choice = choose_prefect_api()
    assert "from .fuseflow/stack.json" in choice.description
    assert choice.env == {"PREFECT_API_URL": health_server}
    import os

    assert "PREFECT_API_URL" not in os.environ  # set only while the run runs (flows.env.environment)


def test_a_stale_stack_file_falls_back_to_prefects_choice(project_dir, monkeypatch):
    """With FUSEFLOW_PREFECT_SERVER=temporary (tests/unit/test_local_server.py covers the default, background)."""
    import os

    from flows.server import choose_prefect_api

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("FUSEFLOW_PREFECT_SERVER", "temporary")
    monkeypatch.setattr("flows.server.loaded_settings_api_url", lambda: None)  # a harness another test started
    _write_stack(project_dir, _dead_url())
    choice = choose_prefect_api()
    assert "temporary local server" in choice.description and choice.env == {}
    assert "PREFECT_API_URL" not in os.environ


def test_prefect_api_url_is_honoured_and_checked(project_dir, health_server, monkeypatch, capsys):
    from flows.cli import main
    from flows.server import choose_prefect_api

    monkeypatch.setenv("PREFECT_API_URL", health_server)
    assert "(PREFECT_API_URL)" in choose_prefect_api().description
    dead = _dead_url()
    monkeypatch.setenv("PREFECT_API_URL", dead)
    write_pipelines(project_dir)
    assert main(["run", "iris-tiny"]) == 1
    assert f"PREFECT_API_URL={dead} does not answer" in capsys.readouterr().err


FAKE_PIPELINE = '''
import sys, types

def run_pipeline(name, overrides=None, file="pipelines.yaml", no_cache=False, resume=False):
    """Stands for flows.pipeline.run_pipeline: reports the API Prefect itself sees inside the run."""
    from prefect.settings import PREFECT_API_URL
    from tasks.pipeline.summary import RunSummary

    print("PREFECT SEES", PREFECT_API_URL.value())
    return RunSummary("run-id", "runs:/run-id/model", {"test_accuracy": 1.0}, "classification", pipeline=name)

fake = types.ModuleType("flows.pipeline")
fake.run_pipeline = run_pipeline
sys.modules["flows.pipeline"] = fake
from flows.cli import main
code = main(["run", "iris-tiny"])
import os
print("AFTER", os.environ.get("PREFECT_API_URL"))
raise SystemExit(code)
'''


def test_a_cli_run_talks_to_the_stack_server_prefect_itself_sees_it(project_dir, health_server, monkeypatch):
    """The stack's address is set before anything imports Prefect (Prefect reads its settings at import), and
    only while the command runs."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    write_pipelines(project_dir)
    _write_stack(project_dir, health_server)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", FAKE_PIPELINE], cwd=project_dir, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"PREFECT SEES {health_server}" in done.stdout
    assert "AFTER None" in done.stdout
