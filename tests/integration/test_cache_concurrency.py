"""Several `fuseflow run` processes at once on one sqlite MLflow store and one step cache: every run finishes,
recorded with its own complete artifacts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import write_pipelines
from tests.support.helpers import cli_env

SEEDS = (11, 12, 13, 14)


@pytest.mark.slow
def test_four_concurrent_runs_on_one_sqlite_store(prefect_harness, project_dir, tracking_uri):
    import yaml
    from mlflow import MlflowClient

    from tasks.tracking.logged_model import model_of_run

    write_pipelines(project_dir)
    assert not Path(tracking_uri.removeprefix("sqlite:///")).exists()  # a fresh store: creation races too
    env = cli_env(project_dir)
    procs = [subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "iris-tiny", "--set", f"seed={seed}"],
                              cwd=project_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for seed in SEEDS]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
    run_ids = [out.split("MLflow run id: ")[1].split()[0] for out in outputs]
    assert len(set(run_ids)) == 4

    client = MlflowClient(tracking_uri)
    artifact_dirs = set()
    for seed, run_id, out in zip(SEEDS, run_ids, outputs):
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params["seed"] == str(seed)
        assert json.loads(run.data.tags["fuseflow.overrides"]) == {"seed": seed}
        files = {a.path for a in client.list_artifacts(run_id)}
        assert {"pipeline.yaml", "evaluation"} <= files, files  # the model: a LoggedModel, listed below
        logged = yaml.safe_load(Path(client.download_artifacts(run_id, "pipeline.yaml", str(project_dir))).read_text())
        assert logged["pipelines"]["iris-tiny"]["seed"] == seed  # its own config, not a neighbour's
        assert {"evaluation/evaluation_report.json", "evaluation/confusion_matrix.png"} <= {
            a.path for a in client.list_artifacts(run_id, "evaluation")}
        model = model_of_run(client, run_id)  # a LoggedModel, asked of this store (not MLflow's global one)
        assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(model.model_id)}
        assert run.data.metrics["test_accuracy"] == pytest.approx(float(out.split("test_accuracy: ")[1].split()[0]),
                                                                  abs=1e-4)
        assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1, 2, 3, 4]
        artifact_dirs.add(run.info.artifact_uri)
    assert len(artifact_dirs) == 4


@pytest.mark.slow
def test_three_identical_runs_at_once_each_hold_the_epoch_history(prefect_harness, project_dir, tracking_uri):
    """Started together, all three decide to train; one trains, the others wait for its lock and read its result.
    Each run still holds the full epoch history, and each names the run that trained (before, two of three ended
    FINISHED with no train_loss, val_loss or lr, and the cache index credited the training to the wrong run)."""
    from mlflow import MlflowClient

    write_pipelines(project_dir)
    env = cli_env(project_dir)
    procs = [subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "iris-tiny"], cwd=project_dir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
    client = MlflowClient(tracking_uri)
    runs = [client.get_run(out.split("MLflow run id: ")[1].split()[0]) for out in outputs]
    trained = [r.info.run_id for r in runs if r.data.tags.get("fuseflow.cache.train") == "computed"]
    assert len(trained) == 1, [r.data.tags.get("fuseflow.cache.train") for r in runs]
    for run in runs:
        assert run.info.status == "FINISHED"
        for metric in ("train_loss", "val_loss", "lr"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1, 2, 3, 4], metric
        if run.info.run_id != trained[0]:
            assert run.data.tags["fuseflow.reused_run_id"] == trained[0]
    index = json.loads((project_dir / ".fuseflow" / "cache" / "index.json").read_text())
    train_keys = [entry for entry in index["keys"].values() if entry["scope"].endswith("/train")]
    assert [entry["run_id"] for entry in train_keys] == trained
