"""End to end against real servers: `prefect server start` (once for the module), `fuseflow serve`, runs created the
way the UI creates them (`POST /api/deployments/{id}/create_flow_run`), the MLflow runs they make, and `fuseflow up`.

Every process is started in its own session and stopped by PID (serve before the server) in fixture finalizers,
so nothing is left behind when a test fails."""
from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.support.helpers import write_pipelines
from tests.support.servers import START_TIMEOUT, Api, base_env, free_port, start, stop_group, tail, wait_for
from tests.support.servers import prefect_server as start_prefect_server

pytestmark = pytest.mark.e2e


PROJECT = """\
pipelines:
  iris-served:
    description: tiny iris MLP served for the end-to-end test
    tags: [e2e]
    schedule:
      - {cron: "0 3 * * *", timezone: UTC}
      - {interval: 1h, active: false}
    data: {source: sklearn, name: iris}
    preprocess: [{standardize: {}}]
    model: {type: mlp, hidden: [8]}
    train: {backend: torch, epochs: 2, batch_size: 32}
    evaluate: {metrics: [accuracy, f1_macro]}
"""


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """One real `prefect server start` on a free loopback port for the whole module; stopped by PID at the end."""
    with start_prefect_server(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


def serve_env(home: Path, api: Api, project: Path) -> dict[str, str]:
    return {**base_env(home), "PREFECT_API_URL": api.url, "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlruns' / 'mlflow.db'}",
            "MLFLOW_UI_URL": "http://127.0.0.1:5999", "FUSEFLOW_LOG_DIR": str(project / "logs"),
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(project / "prefect-results")}


class Served:
    """A running `fuseflow serve` for one project folder."""

    def __init__(self, api: Api, home: Path, project: Path, log_name: str = "serve.log") -> None:
        self.api, self.project, self.log = api, project, project / log_name
        self.proc = start([sys.executable, "-m", "flows.cli", "serve", "--file", str(project / "pipelines.yaml")],
                          serve_env(home, api, project), self.log, cwd=project)

    def wait_deployment(self, name: str, ready: Callable[[dict], bool] = lambda d: True) -> dict:
        return wait_for(lambda: (d := self.api.deployment(name)) and ready(d) and d, START_TIMEOUT,
                        f"deployment fuseflow/{name}", self.proc, self.log)

    def wait_serving(self) -> None:
        wait_for(lambda: "Ctrl-C stops serving" in self.log.read_text(), START_TIMEOUT, "fuseflow serve", self.proc,
                 self.log)

    def stop(self) -> None:
        stop_group(self.proc)


@pytest.fixture(scope="module")
def served(prefect_server, tmp_path_factory):
    """`fuseflow serve` of the tiny iris project; stopped (before the server) when the module ends."""
    api, home = prefect_server
    project = tmp_path_factory.mktemp("served-project")
    write_pipelines(project, PROJECT)
    serve = Served(api, home, project)
    try:
        serve.wait_serving()
        yield serve, serve.wait_deployment("iris-served")
    finally:
        serve.stop()


def mlflow_run_of(served_project: Path, flow_run_id: str):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{served_project / 'mlruns' / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
    return client, runs


def test_deployment_has_its_schedules_and_a_parameter_form(served):
    serve, dep = served
    assert dep["description"] == "tiny iris MLP served for the end-to-end test"
    assert dep["tags"] == ["fuseflow", "e2e"] and dep["paused"] is False
    schedules = {json.dumps(s["schedule"].get("cron") or s["schedule"].get("interval")): s for s in dep["schedules"]}
    cron = schedules['"0 3 * * *"']
    assert cron["schedule"]["timezone"] == "UTC" and cron["active"] is True
    assert schedules["3600.0"]["active"] is False, "`active: false` is a declared but paused schedule"
    form = dep["parameters"]["hyperparameters"]
    assert dep["parameters"] == {"pipeline": "iris-served", "hyperparameters": form, "overrides": {},
                                 "file": str(serve.project / "pipelines.yaml")}
    assert form["train"]["epochs"] == 2 and form["model"]["hidden"] == [8]
    props = dep["parameter_openapi_schema"]["properties"]
    train = props["hyperparameters"]["properties"]["train"]["properties"]
    assert train["epochs"]["type"] == "integer" and train["epochs"]["default"] == 2
    assert train["epochs"]["title"] == "epochs" and train["epochs"]["minimum"] == 1
    lr = train["optimizer"]["properties"]["lr"]
    assert lr["type"] == "number" and lr["default"] == form["train"]["optimizer"]["lr"] and lr["exclusiveMinimum"] == 0
    assert train["optimizer"]["properties"]["name"]["enum"] == ["sgd", "adam", "adamw"]
    model = props["hyperparameters"]["properties"]["model"]["properties"]["hidden"]
    assert model["type"] == "array" and model["items"]["type"] == "integer"
    assert props["hyperparameters"]["position"] == 1
    assert props["pipeline"]["enum"] == ["iris-served"] and props["pipeline"]["readOnly"] is True
    assert {"type": "object", "additionalProperties": True} in props["overrides"]["anyOf"]
    assert "dotted keys" in props["overrides"]["description"]
    assert dep["enforce_parameter_schema"] is True


def test_run_from_the_api_applies_overrides_and_links_both_ways(served, record_property):
    import yaml

    serve, dep = served
    api = serve.api
    t0 = time.time()
    response = api.http.post(f"/deployments/{dep['id']}/create_flow_run", json={  # a Run Name typed in the form
        "name": "my small iris", "parameters": {"overrides": {"train.epochs": 1, "model.hidden": [5, 3]}}})
    assert response.status_code == 201, response.text
    flow_run_id = response.json()["id"]
    final = api.wait_final(flow_run_id, serve.log)
    assert final["name"] == "my small iris", "a Run Name given in the form is kept"
    assert final["state"]["type"] == "COMPLETED", f"{final['state']}\n{tail(serve.log)}"
    client, runs = mlflow_run_of(serve.project, flow_run_id)
    assert len(runs) == 1
    run = runs[0]
    seconds = run.info.end_time / 1000 - t0
    record_property("create_flow_run_to_finished_mlflow_run_s", round(seconds, 1))
    running = datetime.datetime.fromisoformat(final["start_time"].replace("Z", "+00:00")).timestamp() - t0
    print(f"\ncreate_flow_run -> flow run Running {running:.1f} s -> MLflow run created "
          f"{run.info.start_time / 1000 - t0:.1f} s -> MLflow run FINISHED {seconds:.1f} s (runner poll 1 s)")
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "1" and run.data.params["model.hidden"] == "[5, 3]"
    assert run.data.params["override.model.hidden"] == "[5, 3]"
    tags = run.data.tags
    assert tags["prefect.flow_run_id"] == flow_run_id and tags["prefect.deployment"] == "iris-served"
    assert tags["prefect.flow_run_url"] == f"{api.url.removesuffix('/api')}/runs/flow-run/{flow_run_id}"
    resolved = yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "pipeline.yaml")).read_text())
    assert resolved["pipelines"]["iris-served"]["model"]["hidden"] == [5, 3]
    [artifact] = [a for a in api.artifacts(flow_run_id) if a["key"] == "fuseflow-iris-served-metrics"]
    metrics = run.data.metrics
    assert artifact["type"] == "markdown"
    assert f"| test_accuracy | {metrics['test_accuracy']:.4f} |" in artifact["data"]
    assert (f"(http://127.0.0.1:5999/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
            f"?workflowType=machine_learning)") in artifact["data"]
    models = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    page = f"models/{models[0].model_id}" if models else f"runs/{run.info.run_id}/artifacts"  # LoggedModel, else files
    assert (f"(http://127.0.0.1:5999/#/experiments/{run.info.experiment_id}/{page}?workflowType=machine_learning)"
            in artifact["data"].split("Model:")[1]), artifact["data"]
    assert run.info.run_name == "iris-served epochs=1 hidden=[5,3]"
    note = tags["mlflow.note.content"]
    assert f"Prefect flow run: [{flow_run_id}]({tags['prefect.flow_run_url']})" in note
    assert f"Prefect deployment: [fuseflow/iris-served]({api.url.removesuffix('/api')}/deployments/deployment/" \
        f"{dep['id']})" in note


def test_typed_fields_from_the_form_run_with_exactly_those_values(served):
    serve, dep = served
    api = serve.api
    form = json.loads(json.dumps(dep["parameters"]["hyperparameters"]))
    form["train"]["epochs"] = 1
    form["train"]["optimizer"]["lr"] = 0.003
    response = api.create_run(dep["id"], {"hyperparameters": form})
    assert response.status_code == 201, response.text
    flow_run_id = response.json()["id"]
    final = api.wait_final(flow_run_id, serve.log)
    assert final["state"]["type"] == "COMPLETED", f"{final['state']}\n{tail(serve.log)}"
    [run] = mlflow_run_of(serve.project, flow_run_id)[1]
    params = run.data.params
    assert params["train.epochs"] == "1" and params["train.optimizer.lr"] == "0.003"
    assert params["model.hidden"] == "[8]" and params["train.batch_size"] == "32", "unchanged fields change nothing"
    assert params["override.train.epochs"] == "1" and "override.model.hidden" not in params
    assert run.info.run_name == "iris-served epochs=1 lr=0.003"
    assert final["name"] == "iris-served epochs=1 lr=0.003", "Prefect's generated name is replaced"


def test_out_of_range_fields_are_refused_by_the_server(served):
    serve, dep = served
    api = serve.api
    for path, value in [(("train", "epochs"), 0), (("train", "optimizer", "lr"), -1),
                        (("train", "optimizer", "name"), "lion"), (("train", "epochs"), "many")]:
        form = json.loads(json.dumps(dep["parameters"]["hyperparameters"]))
        node = form
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        response = api.create_run(dep["id"], {"hyperparameters": form})
        assert response.status_code in (409, 422), (path, value, response.status_code, response.text)
        assert path[-1] in response.text, response.text


def test_invalid_override_fails_the_run_at_once_with_the_cli_message(served):
    serve, dep = served
    api = serve.api
    response = api.create_run(dep["id"], {"overrides": {"model.hiden": [5], "train.epochs": -1}})
    assert response.status_code == 201, response.text
    flow_run_id = response.json()["id"]
    final = api.wait_final(flow_run_id, serve.log)
    assert final["state"]["type"] == "FAILED"
    cli = subprocess.run([sys.executable, "-m", "flows.cli", "run", "iris-served", "--file",
                          str(serve.project / "pipelines.yaml"), "--set", "model.hiden=[5]", "--set", "train.epochs=-1"],
                         cwd=serve.project, env=serve_env(Path(os.environ["PREFECT_HOME"]), api, serve.project),
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2
    lines = [line.removeprefix("error: ") for line in cli.stderr.splitlines() if line.startswith("error: ")]
    assert any("unknown key 'hiden'; did you mean 'hidden'?" in line for line in lines)
    assert len(lines) == 2 and all(line in final["state"]["message"] for line in lines), final["state"]["message"]
    assert mlflow_run_of(serve.project, flow_run_id)[1] == [], "a bad override must fail before any MLflow run"
    logs = _logs(api, flow_run_id)
    assert "Traceback" not in logs and "Encountered exception" not in logs, logs
    assert f"invalid configuration: {final['state']['message']}" in logs
    typed = api.create_run(dep["id"], {"overrides": {"train.epochs": "many"}})  # what the schema cannot check
    assert typed.status_code == 201, typed.text
    final = api.wait_final(typed.json()["id"], serve.log)
    assert final["state"]["type"] == "FAILED" and "\n" not in final["state"]["message"]
    assert "train.epochs: Input should be a valid integer" in final["state"]["message"]
    assert "Traceback" not in _logs(api, typed.json()["id"])
    assert final["name"] == "iris-served"
    assert not [a for a in api.artifacts(flow_run_id) if a["key"] == "fuseflow-iris-served-metrics"]
    wrong_type = api.create_run(dep["id"], {"overrides": ["train.epochs=1"]})
    assert wrong_type.status_code >= 400 and "overrides" in wrong_type.text
    other_pipeline = api.create_run(dep["id"], {"pipeline": "something-else"})
    assert other_pipeline.status_code >= 400 and "pipeline" in other_pipeline.text


def _logs(api: Api, flow_run_id: str, until: str = "Finished in state") -> str:
    """The flow run's log lines, as the UI reads them (once `until` arrived: logs are shipped in batches)."""
    def read() -> str:
        response = api.http.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}},
                                                        "limit": 200})
        response.raise_for_status()
        return "\n".join(entry["message"] for entry in response.json())

    deadline = time.time() + 30
    while until not in (text := read()) and time.time() < deadline:
        time.sleep(0.5)
    return text


def test_reserving_after_a_yaml_edit_updates_schedules_and_pauses_removed_pipelines(prefect_server, tmp_path):
    api, home = prefect_server
    path = write_pipelines(tmp_path, PROJECT.replace("iris-served", "sched-a") + PROJECT.split("pipelines:\n")[1]
                           .replace("iris-served", "sched-b"))
    first = Served(api, home, tmp_path, "serve-1.log")
    try:
        first.wait_serving()
        before = first.wait_deployment("sched-a")
        assert [s["schedule"].get("cron") for s in before["schedules"] if s["active"]] == ["0 3 * * *"]
        first.wait_deployment("sched-b")
        os.kill(first.proc.pid, signal.SIGINT)  # Ctrl-C: a clean stop that pauses the served deployments
        assert first.proc.wait(timeout=60) == 0, tail(first.log)
        assert "serving stopped; deployments paused" in first.log.read_text() and api.deployment("sched-a")["paused"] is True
    finally:
        first.stop()
    text = path.read_text()
    sched_b = text.index("  sched-b:")
    path.write_text(text[:sched_b].replace('{cron: "0 3 * * *", timezone: UTC}',
                                          '{cron: "30 4 * * 1-5", timezone: Europe/Paris}'))
    second = Served(api, home, tmp_path, "serve-2.log")
    try:
        second.wait_serving()
        after = second.wait_deployment("sched-a", lambda d: not d["paused"])  # re-applied (pause_on_shutdown undone)
        active = [(s["schedule"].get("cron"), s["schedule"].get("timezone")) for s in after["schedules"] if s["active"]]
        assert active == [("30 4 * * 1-5", "Europe/Paris")]
        assert after["paused"] is False and after["id"] == before["id"]
        removed = api.deployment("sched-b")
        assert removed["schedules"] and not any(s["active"] for s in removed["schedules"])
        assert "pipeline 'sched-b' is no longer in" in second.log.read_text()
        assert "paused 1 schedule(s) of deployment fuseflow/sched-b" in second.log.read_text()
    finally:
        second.stop()


def test_up_starts_the_stack_and_ctrl_c_stops_serve_first(tmp_path):
    import httpx

    write_pipelines(tmp_path, PROJECT)
    prefect_port, mlflow_port = free_port(), free_port()
    env = {**base_env(tmp_path / "prefect-home"), "FUSEFLOW_LOG_DIR": str(tmp_path / "logs")}
    log = tmp_path / "up.log"
    proc = start([sys.executable, "-m", "flows.cli", "up", "--prefect-port", str(prefect_port), "--mlflow-port",
                  str(mlflow_port)], env, log, cwd=tmp_path)
    state_file = tmp_path / ".fuseflow" / "stack.json"
    try:
        state = wait_for(lambda: state_file.exists() and json.loads(state_file.read_text()), 2 * START_TIMEOUT,
                         "fuseflow up", proc, log)
        assert state["prefect_url"] == f"http://127.0.0.1:{prefect_port}"
        assert state["mlflow_url"] == f"http://127.0.0.1:{mlflow_port}"
        assert state["tracking_uri"] == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
        assert set(state["pids"]) == {"up", "prefect_server", "mlflow_server", "fuseflow_serve"}
        settings = httpx.get(f"{state['prefect_url']}/ui-settings", timeout=10).json()
        assert settings["api_url"] == state["prefect_api_url"], "the UI must call this server, not port 4200"
        assert httpx.get(f"{state['mlflow_url']}/health", timeout=10).status_code == 200
        api = Api(state["prefect_api_url"])
        wait_for(lambda: api.deployment("iris-served"), START_TIMEOUT, "the served deployment", proc, log)
        output = log.read_text()
        assert f"Prefect UI: http://127.0.0.1:{prefect_port}" in output
        assert f"MLflow UI:  http://127.0.0.1:{mlflow_port}" in output
        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        assert proc.wait(timeout=120) == 0, tail(log)
    finally:
        stop_group(proc)
        for pid in (json.loads(state_file.read_text())["pids"].values() if state_file.exists() else []):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    stopped = [line for line in log.read_text().splitlines() if line.startswith("stopped ")]
    assert [line.split(" (")[0] for line in stopped] == ["stopped fuseflow serve", "stopped mlflow server",
                                                          "stopped prefect server"], tail(log)
    assert not state_file.exists()
    for pid in state["pids"].values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
