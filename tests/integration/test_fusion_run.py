"""Integration: fusion pipelines run end to end through Prefect into a temporary MLflow store.

One module-scoped project: a tiny digits member pipeline trained once (its `runs:/` URI becomes a member),
a fusion of two inline members plus that URI, a soup of members from one initialisation, and a soup of
members from different initialisations (which collapses, so the run ships the best member).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests.support.helpers import write_pipelines

PROJECT = """\
defaults:
  seed: 3
pipelines:
  digits-tiny:
    data: {source: sklearn, name: digits}
    preprocess: [standardize]
    model: {type: mlp, hidden: [16]}
    train: {backend: torch, epochs: 3, batch_size: 64, optimizer: {name: adam, lr: 0.01}}
    evaluate: {confusion_matrix: false, learning_curve: false}
  fusion-mixed:
    fusion:
      members:
        - pipeline: digits-tiny
          set: {seed: 1}
        - pipeline: digits-tiny
          set: {seed: 2, model.hidden: [24]}
          name: wide
        - model: URI
      method: weighted
      require_gain: false
      bootstrap: {samples: 200}
    evaluate: {metrics: [accuracy, f1_macro]}
  soup-one-init:
    fusion:
      members:
        - pipeline: digits-tiny
          set: {seed: 5, train.optimizer.lr: 0.01}
        - pipeline: digits-tiny
          set: {seed: 5, train.optimizer.lr: 0.005, train.epochs: 4}
        - pipeline: digits-tiny
          set: {seed: 5, train.optimizer.lr: 0.02, train.epochs: 2}
      method: soup_uniform
  soup-two-inits:
    fusion:
      members:
        - pipeline: digits-tiny
          set: {seed: 1, train.epochs: 6}
        - pipeline: digits-tiny
          set: {seed: 2, train.epochs: 6}
      method: soup_uniform
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_harness):
    """The project folder and its store, with the member pipeline trained once; runs each fusion on demand."""
    folder = tmp_path_factory.mktemp("fusion-project")
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)  # the global and the env var (a stale global from another module would win)
    from flows.pipeline import run_pipeline

    path = write_pipelines(folder, PROJECT)
    first = run_pipeline("digits-tiny", None, str(path))
    write_pipelines(folder, PROJECT.replace("model: URI", f"model: {first.model_uri}"))
    results: dict[str, dict] = {}

    def run(name: str) -> dict:
        if name not in results:
            results[name] = run_pipeline(name, None, str(path))
        return results[name]

    yield {"folder": folder, "uri": uri, "first": first, "run": run, "path": path}
    mlflow.set_tracking_uri(old)  # None clears the global and the env var


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def _children(client, parent_id: str) -> list:
    parent = client.get_run(parent_id)
    return client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")


def _artifact_json(client, run_id: str, path: str) -> dict:
    import mlflow.artifacts

    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, tracking_uri=client.tracking_uri)
    return json.loads(Path(local).read_text(encoding="utf-8"))


def _test_split(seed: int = 3):
    """The raw test rows and labels of the shared split (what the fusion scored on)."""
    from tasks.data.sources.scikit_learn import SklearnData
    from tasks.data.tabular import load_tabular

    splits = load_tabular(SklearnData(source="sklearn", name="digits"), seed, Path("."))
    return splits.raw["test"], splits.y["test"]


def test_mixed_fusion_parent_has_three_nested_member_runs(project):
    summary = project["run"]("fusion-mixed")
    client = _client(project["uri"])
    parent = client.get_run(summary.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["fuseflow.pipeline"] == "fusion-mixed"
    assert parent.data.metrics["timing/load-data_s"] > 0  # the shared data, loaded before the run opened
    children = _children(client, summary.run_id)
    assert len(children) == 3, [c.info.run_name for c in children]
    assert all(c.info.status == "FINISHED" for c in children)
    by_member = {c.data.tags["fuseflow.fusion.member"]: c for c in children}
    assert set(by_member) == {"member0", "wide", "member2"}
    for name in ("member0", "wide"):  # inline members: the member pipeline's own run, nested
        run = by_member[name]
        assert run.data.tags["fuseflow.pipeline"] == "digits-tiny"
        assert "test_accuracy" in run.data.metrics and "val_loss" in run.data.metrics
        assert run.info.run_name == f"fusion-mixed/{name}"
    assert by_member["wide"].data.params["model.hidden"] == "[24]"
    assert by_member["wide"].data.params["seed"] == "2"
    assert by_member["wide"].data.params["data.split.seed"] == "3"
    record = by_member["member2"]  # the runs:/ member: a nested run that records where it came from
    assert record.data.tags["fuseflow.fusion.source_run_id"] == project["first"].run_id
    assert record.data.tags["fuseflow.fusion.source_uri"] == project["first"].model_uri
    assert "test_accuracy" in record.data.metrics
    tags = parent.data.tags  # members' run ids as tags: the inline members' nested runs, the URI's source run
    assert tags["fuseflow.fusion.member.member0.run_id"] == by_member["member0"].info.run_id
    assert tags["fuseflow.fusion.member.wide.run_id"] == by_member["wide"].info.run_id
    assert tags["fuseflow.fusion.member.member2.run_id"] == project["first"].run_id
    assert summary.fusion.member_run_ids == [by_member["member0"].info.run_id, by_member["wide"].info.run_id,
                                                   project["first"].run_id]


def test_mixed_fusion_logs_report_weights_and_metrics(project):
    summary = project["run"]("fusion-mixed")
    client = _client(project["uri"])
    run = client.get_run(summary.run_id)
    weights = {k.removeprefix("fusion.weights."): float(v) for k, v in run.data.params.items()
               if k.startswith("fusion.weights.")}
    assert set(weights) == {"member0", "wide", "member2"}
    assert abs(sum(weights.values()) - 1) < 1e-4
    artifact = _artifact_json(client, summary.run_id, "fusion/weights.json")
    assert artifact["members"] == pytest.approx(weights, abs=1e-6)
    report = _artifact_json(client, summary.run_id, "fusion/fusion_report.json")
    assert [m["name"] for m in report["members"]] == ["member0", "wide", "member2"]
    assert report["best_member"]["name"] in weights
    for row in ("best_member", "mean", "fused"):
        assert set(report[row]["test"]) >= {"accuracy", "f1_macro", "log_loss"}
    ci = report["bootstrap"]["accuracy"]
    assert ci["low"] <= ci["delta"] <= ci["high"] and ci["confidence"] == 0.95
    assert ci["delta"] == pytest.approx(report["fused"]["test"]["accuracy"] - report["best_member"]["test"]["accuracy"])
    assert report["shipped"] == "fused"  # require_gain: false
    files = {a.path for a in client.list_artifacts(summary.run_id, "fusion")}
    assert {"fusion/fusion_report.json", "fusion/fusion_members.png", "fusion/weights.json",
            "fusion/member_table.md"} <= files
    metrics = run.data.metrics
    for key in ("test_accuracy", "fused_test_accuracy", "best_member_test_accuracy", "mean_test_accuracy",
                "member0_test_accuracy", "wide_test_f1_macro", "fused_minus_best_test_accuracy_ci_low"):
        assert key in metrics, key
    assert metrics["test_accuracy"] == pytest.approx(report["fused"]["test"]["accuracy"])
    assert "| mean |" in run.data.tags["mlflow.note.content"]


def test_fused_model_loads_and_predicts_raw_rows(project, capsys, tmp_path):
    import mlflow.pyfunc
    import pandas as pd

    from flows.cli import main

    summary = project["run"]("fusion-mixed")
    model = mlflow.pyfunc.load_model(summary.model_uri)
    X, y = _test_split()
    out = model.predict(X)
    assert len(out) == len(y) and list(out.columns) == ["label"] + [f"proba_{c}" for c in range(10)]
    preds = out["label"].to_numpy().astype(int)
    report = summary.fusion.report
    assert (preds == y).mean() == pytest.approx(report.fused.test["accuracy"])  # the same model the run scored
    assert np.allclose(out.filter(like="proba_").sum(axis=1), 1.0)
    assert model.metadata.get_input_schema().input_names() == list(X.columns)  # the raw columns, by name
    reordered = X.iloc[:7, ::-1].assign(extra=1.0)
    np.testing.assert_array_equal(model.predict(reordered)["label"].to_numpy().astype(int), preds[:7])
    rows = tmp_path / "rows.csv"
    X[:5].to_csv(rows, index=False)
    assert main(["predict", summary.model_uri, str(rows), "--tracking-uri", project["uri"]]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[-5:] == [str(int(p)) for p in preds[:5]]


def test_soups_of_one_initialisation_run(project):
    from tasks.fusion.config import FusionConfig
    from tasks.fusion.fuse import FusionData, fuse
    from tasks.fusion.members.load import load_member

    summary = project["run"]("soup-one-init")
    client = _client(project["uri"])
    assert client.get_run(summary.run_id).info.status == "FINISHED"
    children = _children(client, summary.run_id)
    assert len(children) == 3
    report = summary.fusion.report
    assert report.level == "weights" and report.method["method"] == "soup_uniform"
    best_val = report.best_member.val["accuracy"]
    assert report.fused.val["accuracy"] >= best_val - 0.05  # one init: the average still classifies digits
    assert report.fused.test["accuracy"] > 0.9
    # soup_greedy on the same three members (loaded from their nested runs, no retraining)
    members = [load_member(c.data.tags["fuseflow.fusion.member"], f"runs:/{c.info.run_id}/model", project["uri"])
               for c in sorted(children, key=lambda c: c.data.tags["fuseflow.fusion.member"])]
    from tasks.data.sources.scikit_learn import SklearnData
    from tasks.data.tabular import load_tabular

    splits = load_tabular(SklearnData(source="sklearn", name="digits"), 3, Path("."))
    data = FusionData(splits.X, splits.y, splits.classes, splits.digest, splits.feature_names)
    method = FusionConfig.model_validate({"members": [{"pipeline": "a"}, {"pipeline": "b"}],
                                          "method": "soup_greedy"}).method
    greedy = fuse(method, members, data, ["accuracy"], FusionConfig.model_fields["bootstrap"].default_factory(), True)
    trace = greedy.report.combination["trace"]
    assert len(trace) == 3 and trace[0]["kept"] is True
    assert greedy.report.fused.val["accuracy"] >= greedy.report.best_member.val["accuracy"]
    kept = [t["add"] for t in trace if t["kept"]]
    assert sorted(m.name for m in greedy.report.members if m.weight > 0) == sorted(kept)


def test_soup_of_different_initialisations_collapses_and_ships_the_best_member(project):
    import mlflow.pyfunc
    import yaml

    summary = project["run"]("soup-two-inits")
    client = _client(project["uri"])
    run = client.get_run(summary.run_id)
    report = summary.fusion.report
    assert report.fused.val["accuracy"] < report.best_member.val["accuracy"] - 0.05  # collapsed
    assert report.gain_on_validation is False
    assert report.shipped == "best_member" and "best member" in report.note
    assert run.data.tags["fuseflow.fusion.shipped"] == "best_member"
    best = run.data.tags["fuseflow.fusion.best_member"]
    assert run.data.metrics["test_accuracy"] == pytest.approx(report.best_member.test["accuracy"])
    # the logged model is the best member's own model (a tabular network), not a fused one
    import mlflow.artifacts

    mlmodel = yaml.safe_load(Path(mlflow.artifacts.download_artifacts(
        run_id=summary.run_id, artifact_path="model/MLmodel", tracking_uri=project["uri"])).read_text())
    assert set(mlmodel["flavors"]["python_function"]["artifacts"]) == {"spec", "weights"}
    member_run = run.data.tags[f"fuseflow.fusion.member.{best}.run_id"]
    X, y = _test_split()
    shipped = mlflow.pyfunc.load_model(summary.model_uri).predict(X)["label"].to_numpy()
    original = mlflow.pyfunc.load_model(f"runs:/{member_run}/model").predict(X)["label"].to_numpy()
    np.testing.assert_array_equal(shipped, original)


def test_registered_model_uris_resolve_as_members(project):
    """models:/<name>/<version> and models:/<name>@<alias> resolve to the run that logged the model."""
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve

    client = _client(project["uri"])
    version = mlflow.register_model(project["first"].model_uri, "digits-tiny")
    client.set_registered_model_alias("digits-tiny", "champion", version.version)
    text = PROJECT.replace("model: URI", f"model: models:/digits-tiny@champion").replace(
        "        - pipeline: digits-tiny\n          set: {seed: 1}\n",
        f"        - model: models:/digits-tiny/{version.version}\n")
    path = write_pipelines(project["folder"], text, "registry.yaml")
    members = resolve(load_project(path), "fusion-mixed").fusion.members
    uri_members = [m for m in members if not m.inline]
    assert [m.run_id for m in uri_members] == [project["first"].run_id] * 2
    assert uri_members[0].model_spec["classes"] == list(range(10))
