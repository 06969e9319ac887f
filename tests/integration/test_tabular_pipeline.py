"""Integration: real pipelines through Prefect (test harness) into a temporary MLflow store."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support.helpers import TINY_IRIS, runs_of, tracking_uri_env, write_pipelines


@pytest.fixture(scope="module")
def iris_project(tmp_path_factory, prefect_harness):
    """A git-tracked project folder with the tiny iris pipeline, its own MLflow store, and one finished run."""
    folder = tmp_path_factory.mktemp("iris-project")
    write_pipelines(folder)
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init"],
                   cwd=folder, check=True)
    from flows.pipeline import run_pipeline

    with tracking_uri_env(folder) as uri:
        summary = run_pipeline("iris-tiny", None, str(folder / "pipelines.yaml"))
        yield folder, uri, summary


def _run(uri: str, run_id: str):
    from mlflow import MlflowClient

    return MlflowClient(uri).get_run(run_id)


def test_run_is_finished_and_tagged(iris_project):
    folder, uri, summary = iris_project
    run = _run(uri, summary.run_id)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["fuseflow.pipeline"] == "iris-tiny"
    assert len(tags["fuseflow.config_hash"]) == 16
    assert len(tags["mlflow.source.git.commit"]) == 40
    assert tags["prefect.flow_run_id"]


def test_params_cover_the_flattened_yaml(iris_project):
    import yaml

    from tasks.tracking.logger import flatten

    folder, uri, summary = iris_project
    params = _run(uri, summary.run_id).data.params
    declared = yaml.safe_load(TINY_IRIS)["pipelines"]["iris-tiny"]
    declared.pop("description")
    for key, value in flatten(declared).items():
        if key.startswith("preprocess"):
            continue  # steps are logged in their resolved form, checked below
        assert key in params, key
        assert params[key] == value or float(params[key]) == float(value), (key, params[key], value)
    assert params["seed"] == "7"  # from defaults
    assert params["preprocess.0.name"] == "standardize"
    assert params["train.scheduler.name"] == "none"  # resolved defaults are logged too


def test_per_epoch_history_and_test_metrics(iris_project):
    from mlflow import MlflowClient

    folder, uri, summary = iris_project
    client = MlflowClient(uri)
    for key in ("train_loss", "val_loss", "val_accuracy", "val_f1_macro"):
        history = client.get_metric_history(summary.run_id, key)
        assert [m.step for m in history] == [1, 2, 3, 4], key
    metrics = _run(uri, summary.run_id).data.metrics
    for key in ("test_accuracy", "test_f1_macro", "test_f1_weighted", "test_precision_macro", "test_recall_macro",
                "test_log_loss"):
        assert key in metrics
    assert metrics["test_accuracy"] > 0.7
    assert summary.metrics["test_accuracy"] == metrics["test_accuracy"]


def test_artifacts_and_dataset_input(iris_project):
    import mlflow

    folder, uri, summary = iris_project
    run_id = summary.run_id
    mlflow.set_tracking_uri(uri)
    files = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(run_id)}
    assert {"pipeline.yaml", "evaluation"} <= files  # the model is a LoggedModel: listed under its name
    assert "model/MLmodel" in {a.path for a in mlflow.MlflowClient(uri).list_artifacts(run_id, "model")}
    evaluation = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(run_id, "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/learning_curve.png", "evaluation/evaluation_report.json"} <= evaluation
    report = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation/evaluation_report.json")).read_text())
    assert report["class_names"] == ["setosa", "versicolor", "virginica"]
    assert set(report["per_class"]) >= {"setosa", "versicolor", "virginica", "macro avg"}
    resolved = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="pipeline.yaml")).read_text()
    assert "iris-tiny" in resolved and "hidden:" in resolved
    inputs = _run(uri, run_id).inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest and inputs[0].dataset.name == "sklearn:iris"


def test_logged_model_predicts_raw_rows(iris_project):
    import mlflow
    import pandas as pd
    from sklearn.datasets import load_iris

    folder, uri, summary = iris_project
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(summary.model_uri)
    iris = load_iris(as_frame=True)
    frame = iris.data.astype(np.float64)
    out = model.predict(frame)
    assert list(out.columns) == ["label", "proba_setosa", "proba_versicolor", "proba_virginica"]
    names = np.asarray(iris.target_names)[iris.target]
    assert (out["label"].to_numpy() == names).mean() > 0.7  # raw, unscaled features: the scaler travels with the model
    assert np.allclose(out.filter(like="proba_").sum(axis=1), 1.0)
    schema = model.metadata.get_input_schema()
    assert schema.input_names() == list(iris.data.columns)  # the raw columns, by name
    assert {t.name for t in schema.input_types()} == {"double"}
    shuffled = frame[frame.columns[::-1]].assign(extra="ignored")  # by name: order and extra columns do not matter
    assert (model.predict(shuffled)["label"] == out["label"]).all()
    assert "python_function" in model.metadata.flavors and "pytorch" not in model.metadata.flavors


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_numpy_rows_predict_through_the_documented_column_names(iris_project, dtype):
    """Issue 12's one blocked point, pinned: MLflow 3.17's schema check turns a 2-D ndarray into columns 0..n-1
    before the model runs and refuses it against the named-column signature. If MLflow ever passes it through, this
    test fails and the point can be closed. The README's workaround (the signature's names) predicts the same labels
    for any float dtype."""
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from sklearn.datasets import load_iris

    folder, uri, summary = iris_project
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(summary.model_uri)
    frame = load_iris(as_frame=True).data
    X = frame.to_numpy().astype(dtype)
    with pytest.raises(MlflowException, match="missing inputs"):
        model.predict(X)
    named = pd.DataFrame(X, columns=model.metadata.get_input_schema().input_names())
    expected = model.predict(frame.astype(np.float64))["label"]
    agree = (model.predict(named)["label"].to_numpy() == expected.to_numpy()).mean()
    assert agree > (0.97 if dtype is np.float16 else 0.999)  # float16 rounds a few borderline rows


def test_predict_cli_prints_class_names(iris_project, capsys):
    import pandas as pd
    from sklearn.datasets import load_iris

    from flows.cli import main

    folder, uri, summary = iris_project
    X, _ = load_iris(return_X_y=True, as_frame=True)
    rows = folder / "rows.csv"
    X.iloc[[0, 50, 100]].to_csv(rows, index=False)
    assert main(["predict", summary.model_uri, str(rows), "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out.split()
    assert out[0] == "setosa" and set(out) <= {"setosa", "versicolor", "virginica"} and len(out) == 3


def test_same_seed_same_metrics_other_seed_differs(iris_project):
    from flows.pipeline import run_pipeline

    folder, uri, summary = iris_project
    again = run_pipeline("iris-tiny", None, str(folder / "pipelines.yaml"))
    other = run_pipeline("iris-tiny", {"seed": 8}, str(folder / "pipelines.yaml"))
    assert again.run_id != summary.run_id
    assert again.metrics == summary.metrics
    assert other.metrics != summary.metrics
    assert _run(uri, other.run_id).data.params["seed"] == "8"
    assert json.loads(_run(uri, other.run_id).data.tags["fuseflow.overrides"]) == {"seed": 8}


def test_regression_target_is_scaled_and_mapped_back(prefect_harness, project_dir, tracking_uri):
    import mlflow
    from sklearn.datasets import load_diabetes

    from flows.pipeline import run_pipeline

    write_pipelines(project_dir, """\
    pipelines:
      diabetes:
        data: {source: sklearn, name: diabetes}
        preprocess: [standardize]
        model: {type: mlp, hidden: [32]}
        train: {backend: torch, epochs: 30, batch_size: 32, loss: mse, optimizer: {name: sgd, lr: 0.01, momentum: 0.9}}
    """)
    summary = run_pipeline("diabetes", None, "pipelines.yaml")
    assert summary.task == "regression"
    assert summary.metrics["test_r2"] > 0.2
    mlflow.set_tracking_uri(tracking_uri)
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    out = mlflow.pyfunc.load_model(summary.model_uri).predict(X[:50])
    assert list(out.columns) == ["prediction"]
    pred = out["prediction"].to_numpy()
    assert 25 < pred.mean() < 346 and pred.std() > 10  # target units, not standardized ones


def test_cli_run_prints_run_id_and_accuracy(prefect_harness, project_dir, tracking_uri, capsys):
    from flows.cli import main

    write_pipelines(project_dir)
    assert main(["run", "iris-tiny", "--set", "train.epochs=2"]) == 0
    out = capsys.readouterr().out
    run_id = out.split("MLflow run id: ")[1].split()[0]
    assert [r.info.run_id for r in runs_of(tracking_uri)] == [run_id]
    assert "test_accuracy: " in out
