"""`fuseflow rerun RUN_ID`: replays the config logged with the run, not today's pipelines.yaml."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.helpers import TINY_IRIS, write_pipelines


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)


def _commit(folder: Path, message: str) -> None:
    _git(folder, "add", "-A")
    _git(folder, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", message)


def test_rerun_after_pipelines_yaml_changed_reproduces_config_and_metrics(prefect_harness, project_dir,
                                                                          tracking_uri, capsys):
    from mlflow import MlflowClient

    from flows.cli import main
    from flows.pipeline import run_pipeline

    write_pipelines(project_dir)
    _git(project_dir, "init", "-q")
    _commit(project_dir, "first")
    original = run_pipeline("iris-tiny", {"train.optimizer.lr": 0.03}, "pipelines.yaml")

    # today's file differs: other epochs, lr, hidden sizes and seed; and the code moved on by one commit
    write_pipelines(project_dir, TINY_IRIS.replace("epochs: 4", "epochs: 2").replace("lr: 0.02", "lr: 0.5")
                    .replace("hidden: [16]", "hidden: [4]").replace("seed: 7", "seed: 9"))
    _commit(project_dir, "second")
    capsys.readouterr()
    assert main(["rerun", original.run_id]) == 0
    out, err = capsys.readouterr()
    assert "metrics match the original run" in out
    new_id = out.split("MLflow run id: ")[1].split()[0]
    assert "warning: git commit differs" in err
    assert "package versions differ" not in err

    client = MlflowClient(tracking_uri)
    old, new = client.get_run(original.run_id), client.get_run(new_id)
    assert new.info.status == "FINISHED"
    assert new.data.tags["fuseflow.rerun_of"] == original.run_id
    assert new.data.tags["fuseflow.config_hash"] == old.data.tags["fuseflow.config_hash"]
    assert {k: v for k, v in new.data.params.items()} == {k: v for k, v in old.data.params.items()
                                                          if not k.startswith("override.")}
    assert new.data.params["train.optimizer.lr"] == "0.03" and new.data.params["train.epochs"] == "4"
    test_metrics = {k: v for k, v in old.data.metrics.items() if k.startswith("test_")}
    assert test_metrics and {k: new.data.metrics[k] for k in test_metrics} == test_metrics
    assert new.data.tags["fuseflow.cache.train"] == "computed"  # reproduced, not read back from the cache
    assert not list(project_dir.glob(".fuseflow-rerun-*.yaml"))  # the replayed config file is cleaned up


def test_rerun_warns_about_package_versions(tmp_path):
    from types import SimpleNamespace

    from flows.rerun import differences, loadable_config
    from tasks.cache.fingerprint import fingerprint_versions

    recorded = dict(fingerprint_versions(), torch="1.0.0")
    run = SimpleNamespace(data=SimpleNamespace(tags={"fuseflow.versions": json.dumps(recorded)}))
    warnings = differences(run, tmp_path)
    assert warnings == [f"package versions differ: torch 1.0.0 -> {fingerprint_versions()['torch']}"]
    assert loadable_config({"name": "x", "seed": 1, "preprocess": [{"name": "standardize", "with_mean": True}]}) == {
        "seed": 1, "preprocess": [{"standardize": {"with_mean": True}}]}


def test_rerun_of_an_unknown_run_is_a_clear_error(project_dir, tracking_uri, capsys):
    from flows.cli import main

    write_pipelines(project_dir)
    assert main(["rerun", "0123456789abcdef0123456789abcdef"]) == 2
    assert "no MLflow run 0123456789abcdef0123456789abcdef" in capsys.readouterr().err
