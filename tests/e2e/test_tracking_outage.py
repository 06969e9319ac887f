"""The MLflow tracking server goes away mid-run: the run fails in bounded time with the original error, says truly
that its MLflow run stays RUNNING (it could not be marked), and `--resume` finishes it once the server is back."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.support.helpers import SLOW_LINEAR_MODULE, cli_env, write_pipelines
from tests.support.servers import MlflowServer, tail, wait_for

pytestmark = pytest.mark.e2e

PIPELINE = """\
pipelines:
  slow-iris:
    seed: 3
    data: {source: sklearn, name: iris}
    preprocess: [standardize]
    model: {type: custom, target: "slowout:build", params: {delay: 0.04}}
    train: {backend: torch, epochs: 40, batch_size: 16, checkpoint_seconds: 0, optimizer: {name: adamw, lr: 0.01}}
"""



def test_a_tracking_outage_fails_clearly_and_resume_finishes(prefect_harness, project_dir):
    from mlflow import MlflowClient

    write_pipelines(project_dir, PIPELINE)
    (project_dir / "slowout.py").write_text(SLOW_LINEAR_MODULE)
    store = project_dir / "store"
    store.mkdir()
    server = MlflowServer(store)
    server.start()
    env = {**cli_env(project_dir), "MLFLOW_TRACKING_URI": server.url}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "slow-iris"], cwd=project_dir, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        client = MlflowClient(server.url)
        run_id = wait_for(lambda: next((r.info.run_id for r in client.search_runs(
            [e.experiment_id for e in client.search_experiments()], "metrics.train_loss > -1")), None),
            180, "the first epoch", proc)
        server.stop()  # the tracking server is gone mid-training
        gone_at = time.monotonic()
        out, _ = proc.communicate(timeout=240)  # bounded: MLflow's own defaults retry for ~4 minutes per request
        waited = time.monotonic() - gone_at
        assert proc.returncode == 1, out[-3000:]
        assert f"the MLflow run {run_id} could not be marked FAILED" in out and "it stays RUNNING" in out, out[-3000:]
        assert "--resume" in out and "marked FAILED;" not in out
        print(f"failed {waited:.0f} s after the server went away")

        server.start()
        assert client.get_run(run_id).info.status == "RUNNING"
        resumed = subprocess.run([sys.executable, "-m", "flows.cli", "run", "slow-iris", "--resume"], cwd=project_dir,
                                 env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics
        steps = [m.step for m in client.get_metric_history(run_id, "val_loss")]
        assert sorted(steps) == list(range(1, 41))  # each epoch once: none lost, none twice
    finally:
        server.stop()
        print(tail(server.log, 5))
