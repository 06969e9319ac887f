"""SIGTERM (docker stop, Kubernetes, a CI timeout) ends a `fuseflow run` cleanly: the MLflow run KILLED with an error
line, the Prefect flow run not left Running, exit 143, and no child process (a temporary Prefect server) left."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.helpers import SLOW_LINEAR_MODULE, cli_env, write_pipelines

pytestmark = pytest.mark.e2e

PIPELINE = """\
pipelines:
  slow-iris:
    seed: 3
    data: {source: sklearn, name: iris}
    preprocess: [standardize]
    model: {type: custom, target: "slowterm:build", params: {delay: 0.05}}
    train: {backend: torch, epochs: 200, batch_size: 16, optimizer: {name: adamw, lr: 0.01}}
"""



def _start(project: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "slow-iris"], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_training(uri: str, proc: subprocess.Popen, timeout: float = 180) -> str:
    """The id of the run once its first epoch is logged."""
    from mlflow import MlflowClient

    from tasks.tracking.logger import prepare_store

    # create the store under the lock the run takes too: a bare client here raced the run's migration of a fresh
    # store ("Online migration expected to match one row"), which failed the run before training (seen under load)
    prepare_store(uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        try:
            runs = MlflowClient(uri).search_runs(
                [e.experiment_id for e in MlflowClient(uri).search_experiments()], "metrics.train_loss > -1")
        except Exception:  # noqa: BLE001 - no experiment yet
            runs = []
        if runs:
            return runs[0].info.run_id
        time.sleep(0.5)
    raise AssertionError("training never started")


def _terminate(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    return out


@pytest.fixture
def project(project_dir, tracking_uri):
    write_pipelines(project_dir, PIPELINE)
    (project_dir / "slowterm.py").write_text(SLOW_LINEAR_MODULE)
    return project_dir


def test_sigterm_marks_the_runs_killed_and_exits_143(prefect_harness, project, tracking_uri):
    from mlflow import MlflowClient
    from prefect import get_client

    proc = _start(project, cli_env(project))
    run_id = _wait_training(tracking_uri, proc)
    out = _terminate(proc)
    assert proc.returncode == 143, out[-3000:]
    assert "error: terminated by SIGTERM" in out and "--resume" in out
    assert "Traceback" not in out
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["fuseflow.error"].startswith("terminated by SIGTERM")
    flow_run_id = run.data.tags["prefect.flow_run_id"]

    async def state() -> str:
        async with get_client() as client:
            return (await client.read_flow_run(flow_run_id)).state.type.value

    assert asyncio.run(state()) in {"CRASHED", "CANCELLED", "FAILED"}


def test_sigterm_leaves_no_temporary_server_behind(project, tracking_uri):
    import psutil

    env = {**cli_env(project), "FUSEFLOW_PREFECT_SERVER": "temporary"}
    env.pop("PREFECT_API_URL")
    proc = _start(project, env)
    _wait_training(tracking_uri, proc)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "expected Prefect's temporary server as a child process"
    out = _terminate(proc)
    assert proc.returncode == 143, out[-3000:]
    gone, alive = psutil.wait_procs(children, timeout=30)
    for child in alive:
        child.kill()
    assert not alive, f"left running: {[c.cmdline() for c in alive]}"


CHILDREN_PIPELINES = {
    # torch DDP: two gloo ranks started by the training step
    "ddp": PIPELINE.replace("batch_size: 16, optimizer", "batch_size: 16, distributed: {nproc_per_node: 2, "
                            "backend: gloo}, optimizer"),
    # a sweep on a local Dask cluster: worker processes started with the flow
    "dask": PIPELINE + """    sweep:
      parameters:
        train.optimizer.lr: [0.01, 0.02, 0.03, 0.04]
      metric: val_loss
    runner: {type: dask, workers: 2}
""",
    # the same sweep on a local Ray cluster: its head (GCS, raylet) and worker processes started with the flow
    "ray": PIPELINE + """    sweep:
      parameters:
        train.optimizer.lr: [0.01, 0.02, 0.03, 0.04]
      metric: val_loss
    runner: {type: ray, workers: 2}
""",
}


@pytest.mark.parametrize("kind", sorted(CHILDREN_PIPELINES))
def test_sigterm_stops_ddp_ranks_and_cluster_workers(kind, prefect_harness, project_dir, tracking_uri):
    """SIGTERM while DDP ranks or Dask/Ray workers train: exit 143, no run left RUNNING, and no child process left."""
    import psutil
    from mlflow import MlflowClient

    if kind == "ray":
        pytest.importorskip("prefect_ray")

    write_pipelines(project_dir, CHILDREN_PIPELINES[kind])
    (project_dir / "slowterm.py").write_text(SLOW_LINEAR_MODULE)
    proc = _start(project_dir, cli_env(project_dir))
    _wait_training(tracking_uri, proc, timeout=300)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 2, f"expected ranks or workers as child processes, got {[c.cmdline() for c in children]}"
    out = _terminate(proc)
    assert proc.returncode == 143, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    gone, alive = psutil.wait_procs(children, timeout=30)
    for child in alive:
        child.kill()
    assert not alive, f"left running: {[' '.join(c.cmdline()[:4]) for c in alive]}"
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and not [r.info.run_id for r in runs if r.info.status == "RUNNING"], \
        {r.info.run_name: r.info.status for r in runs}
