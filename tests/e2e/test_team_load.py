"""A shared team setup under load: a real PostgreSQL (started by the test on loopback) holding both an `mlflow
server`'s store and a Prefect server's database, and 16 pipelines run at once from two project folders. Every run
is FINISHED and complete (its own epoch history, test metrics, model), attributed to the right pipeline and folder,
and its Prefect flow run COMPLETED. Then the same load while the MLflow server is restarted mid-way: each run
either waits and finishes or fails clearly, and `--resume` finishes those; nothing is left RUNNING."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.helpers import write_pipelines
from tests.support.postgres import postgres_server
from tests.support.servers import ROOT, MlflowServer, base_env
from tests.support.servers import prefect_server as start_prefect_server

pytestmark = [pytest.mark.e2e, pytest.mark.load]  # ~5 min on 2 cores: `pytest -m load` (.ci/run runs it)

PIPELINES_PER_FOLDER = 8
EPOCHS = 3
RUN_TIMEOUT = 600  # 16 runs share 2 cores


def project_yaml(folder_index: int) -> str:
    """Eight small iris pipelines per folder, each with its own seed and width (so each result is its own)."""
    lines = ["pipelines:"]
    for i in range(PIPELINES_PER_FOLDER):
        lines += [f"  iris-{i}:",
                  f"    tracking: {{experiment: team-{folder_index}}}",
                  f"    seed: {100 * folder_index + i}",
                  "    data: {source: sklearn, name: iris}",
                  "    preprocess: [standardize]",
                  f"    model: {{type: mlp, hidden: [{4 + i}]}}",
                  f"    train: {{backend: torch, epochs: {EPOCHS}, batch_size: 32}}",
                  "    evaluate: {metrics: [accuracy]}"]
    return "\n".join(lines) + "\n"


def _launch(folders: list[Path], env: dict[str, str]) -> dict[tuple[int, str], subprocess.Popen]:
    procs = {}
    for index, folder in enumerate(folders):
        for i in range(PIPELINES_PER_FOLDER):
            procs[(index, f"iris-{i}")] = subprocess.Popen(
                [sys.executable, "-m", "flows.cli", "run", f"iris-{i}"], cwd=folder,
                env={**env, "FUSEFLOW_LOG_DIR": str(folder / "logs")},
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return procs


def _wait(procs: dict, timeout: float = RUN_TIMEOUT) -> dict[tuple[int, str], tuple[int, str]]:
    deadline = time.monotonic() + timeout
    done = {}
    for key, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        done[key] = (proc.returncode, out)
    return done


def _runs(url: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(url)
    return client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)


def _check_complete(url: str, run) -> None:
    """A FINISHED run holding all that a run holds: one value per epoch, test metrics, a loadable model."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    assert run.info.status == "FINISHED", (run.info.run_name, run.info.status)
    for metric in ("train_loss", "val_loss"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))
        assert steps == list(range(1, EPOCHS + 1)), (run.data.tags.get("fuseflow.pipeline"), metric, steps)
    assert "test_accuracy" in run.data.metrics
    assert run.data.params["train.epochs"] == str(EPOCHS)


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """PostgreSQL with two databases (MLflow's and Prefect's), an MLflow server and a Prefect server on them."""
    pytest.importorskip("psycopg")
    pytest.importorskip("asyncpg")
    import sqlalchemy

    root = tmp_path_factory.mktemp("team")
    with postgres_server("mlflow") as mlflow_db:
        admin = sqlalchemy.create_engine(mlflow_db.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text('CREATE DATABASE "prefect"'))
        admin.dispose()
        prefect_db = mlflow_db.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + "/prefect"
        (root / "prefect").mkdir()
        with start_prefect_server(root / "prefect", prefect_db) as (api, home):
            (root / "mlflow").mkdir()
            server = MlflowServer(root / "mlflow", backend_uri=mlflow_db)  # one worker: uvicorn's supervisor kills
            # workers that miss its 5 s health check on a loaded machine, cutting their connections (seen with 2)
            server.start()
            try:
                env = {**base_env(home), "PREFECT_API_URL": api.url, "MLFLOW_TRACKING_URI": server.url,
                       "PYTHONPATH": str(ROOT)}
                yield root, env, server, api
            finally:
                server.stop()


def _projects(root: Path, name: str) -> list[Path]:
    folders = []
    for index in range(2):
        folder = root / f"{name}-{index}"
        folder.mkdir()
        write_pipelines(folder, project_yaml(index))
        folders.append(folder)
    return folders


def test_sixteen_concurrent_runs_from_two_folders_are_all_complete(team, record_property):
    root, env, server, api = team
    folders = _projects(root, "load")
    started = time.monotonic()
    done = _wait(_launch(folders, env))
    wall = time.monotonic() - started
    record_property("sixteen_runs_wall_s", round(wall, 1))
    print(f"\n16 concurrent runs on PostgreSQL (MLflow + Prefect servers): {wall:.0f} s wall")
    failed = {k: out[-1500:] for k, (rc, out) in done.items() if rc != 0}
    assert not failed, failed
    runs = [r for r in _runs(server.url) if r.data.tags.get("fuseflow.pipeline", "").startswith("iris-")]
    assert len(runs) == 2 * PIPELINES_PER_FOLDER
    seen = set()
    for run in runs:
        _check_complete(server.url, run)
        folder = int(run.data.params["tracking.experiment"].split("-")[1])
        pipeline = run.data.tags["fuseflow.pipeline"]
        assert run.data.params["seed"] == str(100 * folder + int(pipeline.split("-")[1])), "attributed to another run"
        seen.add((folder, pipeline))
    assert len(seen) == 2 * PIPELINES_PER_FOLDER
    flow_runs = api.http.post("/flow_runs/filter", json={"limit": 200}).json()
    ours = {r["id"]: r["state"]["type"] for r in flow_runs}
    for run in runs:
        assert ours[run.data.tags["prefect.flow_run_id"]] == "COMPLETED"


def test_a_restart_of_the_mlflow_server_mid_way_loses_nothing(team):
    root, env, server, api = team
    folders = _projects(root, "restart")
    procs = _launch(folders, env)
    before = {r.info.run_id for r in _runs(server.url)}
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:  # restart once about a quarter of the runs have opened theirs
        if len({r.info.run_id for r in _runs(server.url)} - before) >= 4:
            break
        time.sleep(0.5)
    server.stop()
    time.sleep(3)
    server.start()
    done = _wait(procs)
    resumed = {}
    for (index, pipeline), (rc, out) in done.items():
        if rc != 0:  # failed while the server was away: says so (and how to resume), and --resume finishes it
            assert ("--resume" in out or "no MLflow run was opened" in out) and "Traceback" not in out, out[-2000:]
            again = subprocess.run([sys.executable, "-m", "flows.cli", "run", pipeline, "--resume"], cwd=folders[index],
                                   env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
            assert again.returncode == 0, (again.stdout + again.stderr)[-2000:]
            resumed[(index, pipeline)] = rc
    print(f"\nMLflow server restarted mid-way: {len(done) - len(resumed)} runs finished on their own, "
          f"{len(resumed)} failed clearly and finished with --resume")
    runs = [r for r in _runs(server.url) if r.info.run_id not in before]
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    finished = {(r.data.params["tracking.experiment"], r.data.tags["fuseflow.pipeline"]) for r in runs
                if r.info.status == "FINISHED"}
    assert len(finished) == 2 * PIPELINES_PER_FOLDER
    for run in runs:
        if run.info.status == "FINISHED":
            _check_complete(server.url, run)
