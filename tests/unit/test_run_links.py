"""The Prefect artifact's model link: the run's LoggedModel page when MLflow has one, else the run's artifacts."""
from __future__ import annotations


def test_model_link_uses_the_runs_logged_model(tracking_uri):
    from mlflow import MlflowClient

    from flows.run_report import logged_model_id, mlflow_model_url
    from tasks.tracking.logger import prepare_store

    prepare_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("links")
    with_model, without = client.create_run(exp).info.run_id, client.create_run(exp).info.run_id
    model = client.create_logged_model(exp, name="model", source_run_id=with_model)
    assert logged_model_id(client, exp, with_model) == model.model_id
    assert logged_model_id(client, exp, without) is None
    assert logged_model_id(object(), exp, without) is None  # no LoggedModel API: the artifacts page
    assert mlflow_model_url("http://ui", exp, with_model, model.model_id).endswith(
        f"/#/experiments/{exp}/models/{model.model_id}?workflowType=machine_learning")
