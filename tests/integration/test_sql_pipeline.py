"""Integration: a pipeline reads its table from a sqlite database (`source: sql`), trains through Prefect into MLflow,
and the logged model predicts from a DataFrame of the same columns."""
from __future__ import annotations

import pandas as pd
import pytest

from tests.support.helpers import tracking_uri_env, write_pipelines
from tests.support.tables import shop_frame

PIPELINE = """\
pipelines:
  churn-sql:
    seed: 3
    data:
      source: sql
      url: sqlite:///data/shop.db
      table: customers
      label_column: label
      features: {region: category, spend: {type: numeric, missing: median}}
    preprocess: [standardize]
    model: {type: mlp, hidden: [16]}
    train: {backend: torch, epochs: 8, batch_size: 16, optimizer: {name: adam, lr: 0.02}}
"""


@pytest.fixture(scope="module")
def sql_run(tmp_path_factory, prefect_harness):
    import sqlalchemy

    from flows.pipeline import run_pipeline

    folder = tmp_path_factory.mktemp("sql-project")
    (folder / "data").mkdir()
    engine = sqlalchemy.create_engine(f"sqlite:///{folder / 'data' / 'shop.db'}")
    shop_frame().to_sql("customers", engine, index=False)
    engine.dispose()
    write_pipelines(folder, PIPELINE)
    with tracking_uri_env(folder) as uri:
        yield folder, uri, run_pipeline("churn-sql", None, str(folder / "pipelines.yaml"))


def test_the_run_finishes_with_test_metrics_and_the_source_logged(sql_run):
    from mlflow import MlflowClient

    folder, uri, summary = sql_run
    run = MlflowClient(uri).get_run(summary.run_id)
    assert run.info.status == "FINISHED"
    assert {"test_accuracy", "test_f1_macro", "test_log_loss"} <= set(run.data.metrics)
    assert summary.metrics["test_accuracy"] > 0.6
    assert run.data.params["data.source"] == "sql" and run.data.params["data.table"] == "customers"
    assert run.data.params["data.url"] == "sqlite:///data/shop.db"
    contexts = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d for d in run.inputs.dataset_inputs}
    assert set(contexts) == {"training", "validation", "test"}
    dataset = contexts["training"]
    assert dataset.dataset.name == "sql:sqlite:///data/shop.db#customers"


def test_the_model_predicts_labels_from_a_dataframe(sql_run):
    import mlflow

    folder, uri, summary = sql_run
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(summary.model_uri)
    rows = shop_frame(n=60, seed=1)
    out = model.predict(rows.drop(columns=["label"]))
    assert isinstance(out, pd.DataFrame) and "label" in out.columns and len(out) == 60
    assert set(out["label"]) <= {"churn", "keep"}
    assert (out["label"].to_numpy() == rows["label"].to_numpy()).mean() > 0.6
