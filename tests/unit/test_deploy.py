"""Deployments from pipelines.yaml without a server: schedules, parameters and their schema, the `serve` and `up`
usage errors, and how `up` wires its processes."""
from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.errors import ConfigError
from tests.support.helpers import write_pipelines

ROOT = Path(__file__).resolve().parents[2]

SCHEDULED = """\
pipelines:
  iris-a:
    description: iris with three schedules
    tags: [nightly, tabular]
    schedule:
      - {cron: "0 3 * * *", timezone: Europe/Paris}
      - {interval: 30m, active: false}
      - {rrule: "FREQ=WEEKLY;BYDAY=MO"}
    data: {source: sklearn, name: iris}
    model: {type: mlp, hidden: [4]}
    train: {backend: torch, epochs: 1}
  iris-b:
    data: {source: sklearn, name: iris}
    model: {type: mlp, hidden: [4]}
    train: {backend: torch, epochs: 1}
"""


@pytest.fixture
def scheduled(project_dir):
    from flows.spec.project import load_project

    return load_project(write_pipelines(project_dir, SCHEDULED))


def test_yaml_schedules_become_prefect_schedules(scheduled):
    from flows.deploy import prefect_schedule, select

    cron, interval, rrule = (prefect_schedule(s) for s in select(scheduled, ["iris-a"])["iris-a"].schedule)
    assert (cron.cron, cron.timezone, cron.active) == ("0 3 * * *", "Europe/Paris", True)
    assert (interval.interval, interval.active) == (datetime.timedelta(minutes=30), False)
    assert (rrule.rrule, rrule.active) == ("FREQ=WEEKLY;BYDAY=MO", True)


def test_deployment_carries_name_description_tags_schedules_and_fixed_parameters(scheduled):
    from flows.deploy import build_deployment, select

    spec = select(scheduled, [])["iris-a"]
    dep = build_deployment(spec, scheduled.path)
    assert (dep.name, dep.flow_name, dep.description) == ("iris-a", "fuseflow", "iris with three schedules")
    assert dep.tags == ["fuseflow", "nightly", "tabular"]
    assert [s.active for s in dep.schedules] == [True, False, True]
    assert dep.parameters == {"pipeline": "iris-a", "hyperparameters": dep.parameters["hyperparameters"],
                              "overrides": {}, "file": str(scheduled.path.resolve())}
    assert dep.parameters["hyperparameters"]["train"]["epochs"] == 1
    assert dep.parameters["hyperparameters"]["model"]["hidden"] == [4]
    assert dep.enforce_parameter_schema is True
    assert dep.entrypoint == "flows.pipeline.run_pipeline"
    schema = dep._parameter_openapi_schema.model_dump()["properties"]
    assert schema["pipeline"]["readOnly"] and schema["pipeline"]["enum"] == ["iris-a"]
    assert schema["file"]["readOnly"] and schema["file"]["enum"] == [str(scheduled.path.resolve())]
    assert {"type": "object", "additionalProperties": True} in schema["overrides"]["anyOf"]
    assert "dotted keys" in schema["overrides"]["description"]
    typed = schema["hyperparameters"]
    assert typed["properties"]["train"]["properties"]["epochs"] == {
        "type": "integer", "minimum": 1, "default": 1, "title": "epochs", "description": "`train.epochs`"}
    lr = typed["properties"]["train"]["properties"]["optimizer"]["properties"]["lr"]
    assert (lr["type"], lr["exclusiveMinimum"], lr["title"]) == ("number", 0, "lr")
    order = sorted(schema, key=lambda key: schema[key]["position"])
    assert order[:3] == ["pipeline", "hyperparameters", "overrides"], "typed fields come right after the pipeline"
    no_schedule = build_deployment(select(scheduled, [])["iris-b"], scheduled.path)
    assert no_schedule.schedules == [] and no_schedule.description == "fuseflow pipeline iris-b"


def test_select_reports_unknown_names_and_every_invalid_pipeline(project_dir):
    from flows.deploy import select
    from flows.spec.project import load_project

    project = load_project(write_pipelines(project_dir, SCHEDULED.replace("30m", "soon")))
    with pytest.raises(ConfigError, match=r"unknown pipeline 'iris-c'; did you mean 'iris-[ab]'\?"):
        select(project, ["iris-c"])
    with pytest.raises(ConfigError, match=r"pipelines.yaml:7: pipelines.iris-a.schedule\[1\].interval: invalid interval"):
        select(project, ["iris-b"])  # the whole file must be valid before anything is served


def _cli(args: list[str], cwd: Path, **env: str | None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    full.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env={**full, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_without_a_server_says_how_to_start_one(scheduled):
    result = _cli(["serve", "--file", str(scheduled.path)], scheduled.base_dir)
    assert result.returncode == 2, result.stderr
    assert "PREFECT_API_URL is not set" in result.stderr and "`prefect server start`" in result.stderr
    assert "Traceback" not in result.stderr
    port = _closed_port()
    result = _cli(["serve", "--file", str(scheduled.path)], scheduled.base_dir,
                  PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
    assert result.returncode == 2
    assert f"no Prefect server answers at PREFECT_API_URL=http://127.0.0.1:{port}/api" in result.stderr
    assert "`prefect server start`" in result.stderr


def test_serve_rejects_a_bad_file_before_looking_for_a_server(scheduled):
    result = _cli(["serve", "iris-z", "--file", str(scheduled.path)], scheduled.base_dir)
    assert result.returncode == 2 and "unknown pipeline 'iris-z'" in result.stderr
    assert "PREFECT_API_URL" not in result.stderr


def test_describe_schedule(scheduled):
    from flows.deploy import describe, select

    texts = [describe(s) for s in select(scheduled, [])["iris-a"].schedule]
    assert texts == ["cron '0 3 * * *' Europe/Paris", "every 1800s (paused)", "rrule 'FREQ=WEEKLY;BYDAY=MO'"]


def test_up_refuses_a_busy_port(scheduled):
    from flows.stack import up

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        busy = sock.getsockname()[1]
        with pytest.raises(ConfigError, match=f"prefect port {busy} on 127.0.0.1 is in use"):
            up(scheduled.path, prefect_port=busy, mlflow_port=_closed_port())


def test_up_wires_ports_store_and_links(scheduled, tracking_uri):
    from flows.stack import build_services

    services, urls = build_services(scheduled.path, ["iris-a"], 4301, 5301, tracking_uri)
    prefect, mlflow, serve = services
    assert prefect.env["PREFECT_SERVER_API_PORT"] == "4301" and prefect.argv[-4:] == ["--host", "127.0.0.1",
                                                                                       "--port", "4301"]
    assert mlflow.argv[mlflow.argv.index("--workers") + 1] == "1"
    store = mlflow.argv[mlflow.argv.index("--backend-store-uri") + 1]
    assert store == tracking_uri and Path(store.removeprefix("sqlite:///")).is_absolute()
    assert mlflow.argv[mlflow.argv.index("--default-artifact-root") + 1].startswith("file:///")
    assert serve.argv[-4:] == ["serve", "--file", str(scheduled.path), "iris-a"]
    assert serve.env["PREFECT_API_URL"] == "http://127.0.0.1:4301/api"
    assert serve.env["MLFLOW_UI_URL"] == urls["mlflow_url"] == "http://127.0.0.1:5301"
    assert serve.env["MLFLOW_TRACKING_URI"] == tracking_uri
    remote, remote_urls = build_services(scheduled.path, [], 4301, 5301, "http://127.0.0.1:5999")
    assert [s.name for s in remote] == ["prefect server", "fuseflow serve"]  # a tracking server needs no MLflow
    assert remote_urls["mlflow_url"] == "http://127.0.0.1:5999"


def test_run_report_links_and_tables(monkeypatch):
    from flows.run_report import artifact_key, mlflow_ui_base, report_markdown
    from tasks.pipeline.summary import RunSummary

    monkeypatch.delenv("MLFLOW_UI_URL", raising=False)
    assert artifact_key("Digits_MLP v2") == "fuseflow-digits-mlp-v2-metrics"
    assert mlflow_ui_base("http://127.0.0.1:5000/") == "http://127.0.0.1:5000"
    assert mlflow_ui_base("sqlite:///mlruns/mlflow.db") is None
    monkeypatch.setenv("MLFLOW_UI_URL", "http://127.0.0.1:5001/")
    assert mlflow_ui_base("sqlite:///mlruns/mlflow.db") == "http://127.0.0.1:5001"
    summary = RunSummary("abc", "runs:/abc/model", {"test_accuracy": 0.91234}, "classification")
    text = report_markdown("p", summary, "http://ui/#/experiments/1/runs/abc", "http://ui/#/experiments/1/models/m-1")
    assert "| test_accuracy | 0.9123 |" in text and "[abc](http://ui/#/experiments/1/runs/abc)" in text
    assert "Model: [`runs:/abc/model`](http://ui/#/experiments/1/models/m-1)" in text
    assert "set MLFLOW_UI_URL" in report_markdown("p", RunSummary("abc", "", {}, "classification"), None)
