"""Every model fuseflow logs is an MLflow 3 LoggedModel: found by `search_logged_models`, loaded from the run's URI
and from `models:/<model_id>`, registered with its model id, its final metrics (test at step 0) and the validation
and test datasets linked to it; a training run records system metrics; fused, sweep and reused models too."""
from __future__ import annotations

import json

import pytest

from tests.support.helpers import TINY_IRIS, iris_predictions, tracking_uri_env, write_pipelines

REGISTERED = TINY_IRIS.replace("    description: tiny iris MLP for tests\n", """\
    description: tiny iris MLP for tests
    tracking: {register: iris-logged, promote: {metric: test_accuracy}}
""")

SWEEP = TINY_IRIS + """\
    sweep:
      parameters:
        train.optimizer.lr: [0.005, 0.05]
      metric: val_loss
      max_concurrent: 1
"""

FUSION = TINY_IRIS + """\
  iris-fused:
    fusion:
      members:
        - pipeline: iris-tiny
          set: {seed: 1}
        - pipeline: iris-tiny
          set: {seed: 2, model.hidden: [24]}
      method: mean
      require_gain: false
      bootstrap: {samples: 100}
"""


def _models(client, run_id: str) -> list:
    """The run's LoggedModels, found as a user would: `mlflow.search_logged_models` by source run."""
    import mlflow

    mlflow.set_tracking_uri(client._tracking_client.tracking_uri)  # other tests point the global URI elsewhere
    experiment = client.get_run(run_id).info.experiment_id
    return mlflow.search_logged_models(experiment_ids=[experiment], filter_string=f"source_run_id = '{run_id}'",
                                       output_format="list")


@pytest.fixture(scope="module")
def trained(prefect_harness, tmp_path_factory):
    """A registered tiny iris run, then an unchanged rerun (a whole-run cache hit) of it."""
    import mlflow
    from mlflow import MlflowClient

    from flows.pipeline import run_pipeline

    folder = tmp_path_factory.mktemp("logged-models")
    path = write_pipelines(folder, REGISTERED)
    with tracking_uri_env(folder) as uri:
        mlflow.set_tracking_uri(uri)
        first = run_pipeline("iris-tiny", None, str(path))
        again = run_pipeline("iris-tiny", None, str(path))
        yield MlflowClient(uri), uri, first, again


def test_the_run_has_one_ready_logged_model_that_loads_and_predicts(trained):
    client, uri, first, _ = trained
    (model,) = _models(client, first.run_id)
    assert model.name == "model" and model.status.name == "READY" and model.model_type == "tabular/mlp"
    assert model.source_run_id == first.run_id
    assert model.params["train.optimizer.lr"] == "0.02" and model.tags["fuseflow.pipeline"] == "iris-tiny"
    assert first.model_uri == f"runs:/{first.run_id}/model"
    assert [o.model_id for o in client.get_run(first.run_id).outputs.model_outputs] == [model.model_id]
    for model_uri in (first.model_uri, f"models:/{model.model_id}"):
        predicted, truth = iris_predictions(uri, model_uri)
        assert (predicted == truth).mean() > 0.6, model_uri


def test_the_registered_version_carries_the_model_id(trained):
    client, _, first, _ = trained
    (model,) = _models(client, first.run_id)
    (version,) = [v for v in client.search_model_versions("name = 'iris-logged'") if v.run_id == first.run_id]
    assert version.tags["fuseflow.model_id"] == model.model_id
    assert version.source == model.artifact_location
    listed = json.loads(client.get_logged_model(model.model_id).tags["mlflow.modelVersions"])
    assert {"name": "iris-logged", "version": int(version.version)} in listed
    from tasks.tracking.promotion import version_model_id

    assert version_model_id(version) == model.model_id


def test_test_metrics_are_at_step_zero_and_linked_to_the_model_and_test_split(trained):
    client, _, first, _ = trained
    (model,) = _models(client, first.run_id)
    run = client.get_run(first.run_id)
    datasets = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
                for d in run.inputs.dataset_inputs}
    assert set(datasets) == {"training", "validation", "test"}
    assert len({d.digest for d in datasets.values()}) == 3 and {d.name for d in datasets.values()} == {"sklearn:iris"}
    test_keys = {k for k in run.data.metrics if k.startswith("test_")}
    assert {"test_accuracy", "test_f1_macro"} <= test_keys
    for key in test_keys:
        assert [m.step for m in client.get_metric_history(first.run_id, key)] == [0], key
    linked = {m.key: m for m in model.metrics}
    assert test_keys <= set(linked)
    for key in test_keys:
        assert linked[key].model_id == model.model_id and linked[key].step == 0
        assert (linked[key].dataset_name, linked[key].dataset_digest) == (datasets["test"].name, datasets["test"].digest)
        assert linked[key].value == run.data.metrics[key]
    # the last epoch's validation metrics (its weights are kept), with the validation split; the run's history keeps
    # one row per epoch (linking logs no second point)
    assert linked["val_loss"].step == 4 and linked["val_loss"].dataset_digest == datasets["validation"].digest
    assert [m.step for m in client.get_metric_history(first.run_id, "val_loss")] == [1, 2, 3, 4]


def test_a_training_run_records_system_metrics(trained):
    client, _, first, _ = trained
    metrics = client.get_run(first.run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(metrics)
    assert metrics["system/system_memory_usage_megabytes"] > 0


def test_a_cache_hit_rerun_has_its_own_logged_model_that_loads(trained):
    client, uri, first, again = trained
    assert client.get_run(again.run_id).data.tags["fuseflow.cache.run"] == "reused"
    (original,) = _models(client, first.run_id)
    (model,) = _models(client, again.run_id)
    assert model.model_id != original.model_id and model.status.name == "READY"
    assert model.tags["fuseflow.reused_run_id"] == first.run_id
    assert model.tags["fuseflow.source_model_id"] == original.model_id
    assert {m.key for m in model.metrics} >= {"test_accuracy", "val_loss"}
    assert all(m.step == 0 for m in model.metrics if m.key.startswith("test_"))
    mine, _ = iris_predictions(uri, again.model_uri)
    theirs, _ = iris_predictions(uri, first.model_uri)
    assert (mine == theirs).all()
    (version,) = [v for v in client.search_model_versions("name = 'iris-logged'") if v.run_id == again.run_id]
    assert version.tags["fuseflow.model_id"] == model.model_id


def test_a_fused_model_is_a_logged_model(prefect_harness, tmp_path):
    from mlflow import MlflowClient

    from flows.pipeline import run_pipeline

    write_pipelines(tmp_path, FUSION)
    with tracking_uri_env(tmp_path) as uri:
        summary = run_pipeline("iris-fused", None, str(tmp_path / "pipelines.yaml"))
        client = MlflowClient(uri)
        (model,) = _models(client, summary.run_id)
        assert model.status.name == "READY" and model.model_type == "fusion/mean"
        assert {m.key for m in model.metrics} >= {"test_accuracy"}
        predicted, truth = iris_predictions(uri, f"models:/{model.model_id}")
        assert (predicted == truth).mean() > 0.5
        run = client.get_run(summary.run_id)
        members = [r for r in client.search_runs([run.info.experiment_id])
                   if r.data.tags.get("mlflow.parentRunId") == summary.run_id]
        assert len(members) == 2
        for member in members:  # each member is a training run of its own: a LoggedModel, no system metrics
            assert len(_models(client, member.info.run_id)) == 1
            assert not any(k.startswith("system/") for k in member.data.metrics)
        assert "system/cpu_utilization_percentage" in run.data.metrics  # sampled on the parent while they trained


def test_a_sweeps_best_model_is_a_logged_model_of_the_sweep_run(prefect_harness, tmp_path):
    from mlflow import MlflowClient

    from flows.pipeline import run_pipeline

    write_pipelines(tmp_path, SWEEP)
    with tracking_uri_env(tmp_path) as uri:
        summary = run_pipeline("iris-tiny", None, str(tmp_path / "pipelines.yaml"))
        client = MlflowClient(uri)
        (model,) = _models(client, summary.run_id)
        best_run = client.get_run(summary.run_id).data.tags["fuseflow.sweep.best_run_id"]
        (trial_model,) = _models(client, best_run)
        assert model.tags["fuseflow.source_model_id"] == trial_model.model_id
        assert model.model_type == "tabular/mlp" and model.status.name == "READY"
        test_digest = next(d.dataset.digest for d in client.get_run(best_run).inputs.dataset_inputs
                           if any(t.value == "test" for t in d.tags))
        linked = {m.key: m for m in model.metrics}
        assert linked["test_accuracy"].step == 0 and linked["test_accuracy"].dataset_digest == test_digest
        predicted, truth = iris_predictions(uri, summary.model_uri)
        assert (predicted == truth).mean() > 0.5


def test_system_metrics_log_a_sample_for_a_block_shorter_than_the_interval(tracking_uri):
    from mlflow import MlflowClient

    from tasks.tracking.logger import RunLogger
    from tasks.tracking.system_metrics import system_metrics

    client = MlflowClient(tracking_uri)
    run = client.create_run(client.create_experiment("sys"))
    logger = RunLogger(run.info.run_id, tracking_uri)
    with system_metrics(logger, interval=30):
        pass
    assert "system/cpu_utilization_percentage" in client.get_run(run.info.run_id).data.metrics
    child = client.create_run(run.info.experiment_id, tags={"mlflow.parentRunId": run.info.run_id})
    with system_metrics(RunLogger(child.info.run_id, tracking_uri), interval=30):
        pass
    assert not any(k.startswith("system/") for k in client.get_run(child.info.run_id).data.metrics)


def test_logging_a_model_again_replaces_the_runs_earlier_one(tracking_uri, tmp_path):
    import shutil

    import mlflow
    from mlflow import MlflowClient

    from tasks.tracking.logged_model import log_model_folder, model_of_run

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    client = MlflowClient(tracking_uri)
    run = client.create_run(client.create_experiment("again"))
    ids = []
    for attempt in range(2):  # a retried log-model step
        folder = tmp_path / f"echo-{attempt}"
        mlflow.pyfunc.save_model(str(folder), python_model=Echo())
        ids.append(log_model_folder(client, run.info.run_id, folder, model_type="echo").model_id)
        shutil.rmtree(folder)
    assert model_of_run(client, run.info.run_id).model_id == ids[1]
    assert [m.model_id for m in _models(client, run.info.run_id)] == [ids[1]]
    mlflow.set_tracking_uri(tracking_uri)
    assert mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").metadata.model_id == ids[1]
