"""Step caching: what is reused across runs, what is recomputed, and why (config, data, code, versions)."""
from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from tests.support.helpers import write_iris_csv, write_pipelines

CSV_PIPELINE = """\
pipelines:
  iris-csv:
    data: {source: csv, path: data/iris.csv, label_column: species}
    preprocess: [standardize]
    model: {type: custom, target: "cachenet.net:build", params: {hidden: 12}}
    train: {backend: torch, epochs: 3, batch_size: 16, optimizer: {name: adam, lr: 0.02}}
"""

HELPER = """\
import torch


def activation(x):
    return torch.relu(x)
"""

NET = """\
import torch.nn as nn

from cachenet.helper import activation


class Net(nn.Module):
    def __init__(self, in_features, out_features, hidden=8):
        super().__init__()
        self.hidden = nn.Linear(in_features, hidden)
        self.out = nn.Linear(hidden, out_features)

    def forward(self, x):
        return self.out(activation(self.hidden(x)))


def build(in_features, out_features, hidden=8):
    return Net(in_features, out_features, hidden)
"""


@pytest.fixture
def csv_project(project_dir, tracking_uri, monkeypatch):
    """A project with a CSV data file and a `type: custom` model whose module imports a helper module."""
    monkeypatch.delenv("FUSEFLOW_CACHE_DIR", raising=False)
    write_pipelines(project_dir, CSV_PIPELINE)
    write_iris_csv(project_dir / "data" / "iris.csv")
    package = project_dir / "cachenet"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text(HELPER)
    (package / "net.py").write_text(NET)
    monkeypatch.syspath_prepend(str(project_dir))
    for name in ("cachenet", "cachenet.helper", "cachenet.net"):
        sys.modules.pop(name, None)
    yield project_dir
    for name in ("cachenet", "cachenet.helper", "cachenet.net"):
        sys.modules.pop(name, None)


def _tags(uri: str, run_id: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return MlflowClient(uri).get_run(run_id).data.tags


def _decisions(uri: str, run_id: str) -> dict[str, str]:
    tags = _tags(uri, run_id)
    return {step: tags.get(f"fuseflow.cache.{step}") for step in ("load-data", "preprocess", "train")}


def _reason(uri: str, run_id: str, step: str) -> str:
    return _tags(uri, run_id)[f"fuseflow.cache.{step}.reason"]


def test_reuse_and_invalidation_by_config_data_and_code(prefect_harness, csv_project, tracking_uri):
    from mlflow import MlflowClient

    from flows.pipeline import run_pipeline

    client = MlflowClient(tracking_uri)
    first = run_pipeline("iris-csv", None, "pipelines.yaml")
    assert _decisions(tracking_uri, first.run_id) == {"load-data": "computed", "preprocess": "computed",
                                                         "train": "computed"}

    # unchanged: every step reused, yet a run of its own, complete, tagged with the run it reused
    again = run_pipeline("iris-csv", None, "pipelines.yaml")
    assert again.run_id != first.run_id
    assert _decisions(tracking_uri, again.run_id) == {"load-data": "cached", "preprocess": "cached",
                                                         "train": "cached"}
    tags = _tags(tracking_uri, again.run_id)
    assert tags["fuseflow.reused_run_id"] == first.run_id
    assert again.metrics == first.metrics
    reused = client.get_run(again.run_id)
    assert reused.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(again.run_id, "val_loss")] == [1, 2, 3]
    assert {"evaluation", "pipeline.yaml"} <= {a.path for a in client.list_artifacts(again.run_id)}
    from tasks.tracking.logged_model import model_of_run

    model = model_of_run(client, again.run_id)  # its own LoggedModel
    assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(model.model_id)}

    # a training parameter: training recomputed, data loading and preprocessing reused
    lr = run_pipeline("iris-csv", {"train.optimizer.lr": 0.05}, "pipelines.yaml")
    assert _decisions(tracking_uri, lr.run_id) == {"load-data": "cached", "preprocess": "cached",
                                                      "train": "computed"}
    assert "config (train_config.optimizer.lr)" in _reason(tracking_uri, lr.run_id, "train")

    # the data file's content changes at the same path: everything downstream recomputed
    write_iris_csv(csv_project / "data" / "iris.csv", slice(0, 140))
    data = run_pipeline("iris-csv", None, "pipelines.yaml")
    assert _decisions(tracking_uri, data.run_id) == {"load-data": "computed", "preprocess": "computed",
                                                        "train": "computed"}
    assert _reason(tracking_uri, data.run_id, "load-data") == "changed: data (config.file)"
    assert "data (splits)" in _reason(tracking_uri, data.run_id, "preprocess")

    # a helper module the model's module imports is edited: training invalidated, data steps reused
    helper = csv_project / "cachenet" / "helper.py"
    helper.write_text(HELPER.replace("torch.relu(x)", "torch.tanh(x)"))
    importlib.reload(importlib.import_module("cachenet.helper"))
    importlib.reload(importlib.import_module("cachenet.net"))
    code = run_pipeline("iris-csv", None, "pipelines.yaml")
    assert _decisions(tracking_uri, code.run_id) == {"load-data": "cached", "preprocess": "cached",
                                                        "train": "computed"}
    assert _reason(tracking_uri, code.run_id, "train") == "changed: code (cachenet.helper)"
    assert code.metrics != data.metrics

    # --no-cache: everything recomputed, with that reason
    fresh = run_pipeline("iris-csv", None, "pipelines.yaml", no_cache=True)
    assert set(_decisions(tracking_uri, fresh.run_id).values()) == {"computed"}
    assert _reason(tracking_uri, fresh.run_id, "train") == "--no-cache"
    assert fresh.metrics == code.metrics
    assert (csv_project / ".fuseflow" / "cache" / "results").is_dir()


def test_cache_folder_is_configurable_and_safe_to_delete(prefect_harness, project_dir, tracking_uri, monkeypatch):
    import shutil

    from flows.pipeline import run_pipeline

    folder = project_dir / "elsewhere"
    monkeypatch.setenv("FUSEFLOW_CACHE_DIR", str(folder))
    write_pipelines(project_dir)
    first = run_pipeline("iris-tiny", {"train.epochs": 1}, "pipelines.yaml")
    assert (folder / "results").is_dir() and (folder / "index.json").is_file()
    assert not (project_dir / ".fuseflow" / "cache").exists()
    shutil.rmtree(folder)
    after = run_pipeline("iris-tiny", {"train.epochs": 1}, "pipelines.yaml")
    assert _decisions(tracking_uri, after.run_id)["train"] == "computed"
    assert after.metrics == first.metrics


def test_code_fingerprint_follows_imports_not_unrelated_modules(tmp_path, monkeypatch):
    from tasks.cache.fingerprint import fingerprint_code, module_closure

    package = tmp_path / "fpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "used.py").write_text("VALUE = 1\n")
    (package / "unused.py").write_text("OTHER = 1\n")
    (package / "step.py").write_text(textwrap.dedent("""\
        def step(x):
            from fpkg.used import VALUE
            return x + VALUE
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    step = importlib.import_module("fpkg.step").step
    before = fingerprint_code(step, {"x": 1})
    assert set(before) == {"fpkg", "fpkg.used", "fpkg.step:step"}
    (package / "unused.py").write_text("OTHER = 2\n")
    assert fingerprint_code(step, {"x": 1}) == before
    (package / "used.py").write_text("VALUE = 2  # edited\n")
    after = fingerprint_code(step, {"x": 1})
    assert after["fpkg.used"] != before["fpkg.used"] and after["fpkg.step:step"] == before["fpkg.step:step"]
    assert "torch" not in module_closure(["torch"])  # installed packages count by version, not source
    for name in ("fpkg", "fpkg.step", "fpkg.used"):
        sys.modules.pop(name, None)


def test_a_miss_names_the_changed_parts():
    from tasks.cache.index import explain_change

    old = {"config": {"lr": "0.1", "epochs": "3"}, "data": {"splits": "a"}, "code": {"m": "1"},
           "versions": {"torch": "2.13.0"}}
    new = {"config": {"lr": "0.2", "epochs": "3"}, "data": {"splits": "a"}, "code": {"m": "1"},
           "versions": {"torch": "2.14.0"}}
    assert explain_change(old, new) == "changed: config (lr); versions (torch 2.13.0 -> 2.14.0)"
    assert explain_change(None, new) == "no earlier run of this step"


def test_the_logger_is_not_part_of_the_key():
    from tasks.cache.policy import StepCachePolicy
    from tasks.steps.tabular import train

    class FakeLogger:
        def __init__(self, run_id: str) -> None:
            self.run_id = run_id

        def log_metrics(self, *args: object) -> None:
            pass

    policy = StepCachePolicy()
    inputs = {"model": None, "splits": None, "train_config": {"epochs": 2}, "seed": 1}
    one = policy.key_parts(train.fn, {**inputs, "logger": FakeLogger("a")})
    two = policy.key_parts(train.fn, {**inputs, "logger": FakeLogger("b")})
    assert one == two
    assert not any(key.startswith("logger") for key in one["config"])


def test_text_training_is_reused_and_invalidated_by_its_config(prefect_harness, project_dir, tracking_uri,
                                                               monkeypatch):
    from flows.pipeline import run_pipeline
    from tests.support.text_helpers import spam_project, text_pipelines

    monkeypatch.delenv("FUSEFLOW_CACHE_DIR", raising=False)
    spam_project(project_dir, 60, seed=1)
    write_pipelines(project_dir, text_pipelines(project_dir / "spam.csv", project_dir / "tokenizer", "torch", 1))
    first = run_pipeline("spam-tiny", None, "pipelines.yaml")
    again = run_pipeline("spam-tiny", None, "pipelines.yaml")
    other = run_pipeline("spam-tiny", {"train.optimizer.lr": 0.01}, "pipelines.yaml")
    assert _tags(tracking_uri, first.run_id)["fuseflow.cache.train"] == "computed"
    assert _tags(tracking_uri, again.run_id)["fuseflow.cache.train"] == "cached"
    assert _tags(tracking_uri, again.run_id)["fuseflow.reused_run_id"] == first.run_id
    assert again.metrics == first.metrics
    assert _reason(tracking_uri, other.run_id, "train") == "changed: config (train_config.optimizer.lr)"


_COMPUTED: list[int] = []


def test_concurrent_runs_of_one_step_compute_it_once_and_share_the_result(prefect_harness, tmp_path):
    """Sweep trials and fusion members compute the same cached steps at the same moment: one computes while the
    others wait on its lock, then they read its complete result (none reads a half-written one)."""
    import time

    from prefect import flow, task

    from tasks.cache.policy import StepCachePolicy, cache_options, cached_step

    @task(name="slow-step", cache_policy=StepCachePolicy())
    def slow_step(x: int) -> list[int]:
        _COMPUTED.append(x)
        time.sleep(1.5)
        return [x] * 100_000

    @flow
    def three_at_once() -> list[int]:
        with cache_options(tmp_path / "cache"):
            step = cached_step(slow_step)
            futures = [step.submit(3) for _ in range(3)]
            return [len(f.result()) for f in futures]

    _COMPUTED.clear()
    assert three_at_once() == [100_000] * 3
    assert _COMPUTED == [3]


def test_a_killed_runs_lock_is_stale_and_a_live_one_holds(tmp_path):
    """A run killed while computing a step must not block that step forever; a live holder's lock must hold."""
    import subprocess
    import sys

    from tasks.cache.locks import ProcessAwareLockManager

    locks = ProcessAwareLockManager(tmp_path / "locks")
    assert locks.acquire_lock("step-key", holder="me")
    assert locks.is_locked("step-key") and (tmp_path / "locks" / "step-key.owner").exists()
    other = ProcessAwareLockManager(tmp_path / "locks")  # another run, this process still alive
    assert not other.acquire_lock("step-key", holder="other", acquire_timeout=0.3)

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = tmp_path / "locks" / "step-key.owner"
    owner.write_text(owner.read_text().split()[0] + f" {int(dead.stdout)}")  # the holder was killed
    assert not other.is_locked("step-key")
    assert not (tmp_path / "locks" / "step-key.lock").exists()
    assert other.acquire_lock("step-key", holder="other", acquire_timeout=1)
    other.release_lock("step-key", holder="other")
    assert not owner.exists() and not other.is_locked("step-key")


def test_the_cache_is_kept_under_its_cap_least_recently_used_first(prefect_harness, project_dir, tracking_uri,
                                                                    monkeypatch):
    import json

    from flows.pipeline import run_pipeline

    monkeypatch.delenv("FUSEFLOW_CACHE_DIR", raising=False)
    write_pipelines(project_dir)
    first = run_pipeline("iris-tiny", {"train.epochs": 1}, "pipelines.yaml")
    run_pipeline("iris-tiny", {"train.epochs": 2}, "pipelines.yaml")  # reuses load-data and preprocess
    index = json.loads((project_dir / ".fuseflow" / "cache" / "index.json").read_text())
    used = {entry["scope"].split("/")[1] for entry in index["keys"].values() if "used" in entry}
    assert used == {"load-data", "preprocess"}  # read again: most recently used
    results = project_dir / ".fuseflow" / "cache" / "results"
    assert len(list(results.iterdir())) == 4  # two data steps, two trainings
    monkeypatch.setenv("FUSEFLOW_CACHE_MAX_GB", str(1 / 1024**3))  # one byte: everything not in use goes
    again = run_pipeline("iris-tiny", {"train.epochs": 1, "seed": 5}, "pipelines.yaml")
    assert list(results.iterdir()) == []
    assert again.run_id != first.run_id
