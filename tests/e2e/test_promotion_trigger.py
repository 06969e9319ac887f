"""End to end against a real Prefect server: a training run that promotes a champion emits
`fuseflow.model.promoted`, and the scoring pipeline that declares `triggers: [{on: promoted, model: ...}]`, served by
`fuseflow serve`, starts by itself and scores with the new champion; a failed run emits `fuseflow.run.failed`."""
from __future__ import annotations

import subprocess
import sys

import pytest
from sklearn.datasets import load_iris

from tests.e2e.test_serve_ui_links import Served, serve_env
from tests.support.helpers import write_pipelines
from tests.support.servers import START_TIMEOUT, tail, wait_for
from tests.support.servers import prefect_server as start_prefect_server

pytestmark = pytest.mark.e2e

PROJECT = """\
pipelines:
  iris-train:
    tracking: {register: iris-clf, promote: {metric: test_accuracy}}
    data: {source: sklearn, name: iris}
    preprocess: [standardize]
    model: {type: mlp, hidden: [8]}
    train: {backend: torch, epochs: 3, batch_size: 32}
  iris-score:
    triggers:
      - on: promoted
        model: iris-clf
    predict:
      model: models:/iris-clf@champion
      data: {source: csv, path: rows.csv}
      output: {path: "scores/{run_id}.csv"}
  broken:
    data: {source: sklearn, name: iris}
    model: {type: custom, target: "boom:build"}
    train: {backend: torch, epochs: 1}
"""


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    with start_prefect_server(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


def scoring_runs(api, deployment_id: str) -> list[dict]:
    response = api.http.post("/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [deployment_id]}}})
    response.raise_for_status()
    return response.json()


def events(api, name: str) -> list[dict]:
    response = api.http.post("/events/filter", json={"filter": {"event": {"name": [name]}}, "limit": 50})
    response.raise_for_status()
    return response.json()["events"]


def test_promotion_emits_the_event_and_its_trigger_runs_the_scoring_pipeline(prefect_server, tmp_path):
    import pandas as pd
    from mlflow import MlflowClient

    api, home = prefect_server
    project = tmp_path
    write_pipelines(project, PROJECT)
    load_iris(as_frame=True).frame.drop(columns="target").sample(30, random_state=0).to_csv(project / "rows.csv",
                                                                                             index=False)
    (project / "scores").mkdir()
    (project / "boom.py").write_text("def build(in_features, out_features):\n    raise RuntimeError('boom')\n")
    serve = Served(api, home, project)
    try:
        serve.wait_serving()
        deployment = serve.wait_deployment("iris-score")
        assert scoring_runs(api, deployment["id"]) == []  # no schedule: nothing runs until a promotion
        env = serve_env(home, api, project)
        trained = subprocess.run([sys.executable, "-m", "flows.cli", "run", "iris-train"], cwd=project, env=env,
                                 capture_output=True, text=True, timeout=300)
        assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
        promoted = wait_for(lambda: events(api, "fuseflow.model.promoted"), 60, "the promoted event", serve.proc,
                            serve.log)
        assert promoted[0]["resource"]["prefect.resource.id"] == "fuseflow.model.iris-clf"
        assert promoted[0]["payload"]["version"] == "1" and promoted[0]["payload"]["alias"] == "champion"
        runs = wait_for(lambda: scoring_runs(api, deployment["id"]), START_TIMEOUT, "a triggered scoring run",
                        serve.proc, serve.log)
        final = api.wait_final(runs[0]["id"], serve.log)
        assert final["state"]["type"] == "COMPLETED", f"{final['state']}\n{tail(serve.log)}"
        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        experiments = [e.experiment_id for e in client.search_experiments()]
        (scored,) = client.search_runs(experiments, f"tags.`prefect.flow_run_id` = '{runs[0]['id']}'")
        assert scored.data.tags["fuseflow.scoring.model_version"] == "1"
        assert len(pd.read_csv(scored.data.tags["fuseflow.scoring.output"])) == 30

        failed = subprocess.run([sys.executable, "-m", "flows.cli", "run", "broken"], cwd=project, env=env,
                                capture_output=True, text=True, timeout=300)
        assert failed.returncode == 1, failed.stderr[-2000:]  # the run opened, then its model failed to build
        found = wait_for(lambda: events(api, "fuseflow.run.failed"), 60, "the failed event", serve.proc, serve.log)
        assert found[0]["resource"]["prefect.resource.id"] == "fuseflow.pipeline.broken"
        assert "boom" in found[0]["payload"]["error"]
    finally:
        serve.stop()
