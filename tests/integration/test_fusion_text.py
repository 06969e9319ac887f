"""Integration: a fusion of two tiny text classifiers (fresh BERTs on a ham/spam CSV) whose fused pyfunc model
predicts labels for raw strings, through `mlflow.pyfunc` and `fuseflow predict --text`."""
from __future__ import annotations

import os

import mlflow
import pytest

from tests.support.helpers import write_pipelines
from tests.support.text_helpers import spam_project, text_pipelines

FUSION = """\
  spam-fusion:
    fusion:
      members:
        - pipeline: spam-tiny
          set: {seed: 1}
        - pipeline: spam-tiny
          set: {seed: 2, train.optimizer.lr: 0.003}
      method: {weighted: {temperature: true}}
      require_gain: false
"""


@pytest.fixture(scope="module")
def text_fusion(tmp_path_factory, prefect_harness):
    folder = tmp_path_factory.mktemp("text-fusion")
    spam_project(folder)
    path = write_pipelines(folder, text_pipelines(folder / "spam.csv", folder / "tokenizer", "torch", 2) + FUSION)
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)  # the global and the env var (a stale global from another module would win)
    from flows.pipeline import run_pipeline

    yield folder, uri, run_pipeline("spam-fusion", None, str(path))
    mlflow.set_tracking_uri(old)  # None clears the global and the env var


def test_text_fusion_runs_members_nested_and_logs_report(text_fusion):
    from mlflow import MlflowClient

    folder, uri, summary = text_fusion
    client = MlflowClient(uri)
    parent = client.get_run(summary.run_id)
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{summary.run_id}'")
    assert sorted(c.data.tags["fuseflow.fusion.member"] for c in children) == ["member0", "member1"]
    assert all(c.data.params["model.type"] == "hf_sequence_classification" for c in children)
    report = summary.fusion.report
    assert report.classes == ["ham", "spam"]
    assert report.shipped == "fused"
    assert report.combination["temperature"] > 0
    assert abs(sum(m.weight for m in report.members) - 1) < 1e-9
    assert report.fused.test["accuracy"] >= 0.5


def test_fused_text_model_predicts_labels_for_strings(text_fusion, capsys):
    import mlflow.pyfunc

    from flows.cli import main

    folder, uri, summary = text_fusion
    model = mlflow.pyfunc.load_model(summary.model_uri)
    texts = ["win a free prize now", "see you at lunch tomorrow"]
    out = model.predict(texts)
    assert list(out.columns) == ["label", "score"]
    assert set(out["label"]) <= {"ham", "spam"} and ((out["score"] >= 0.5) & (out["score"] <= 1)).all()
    assert main(["predict", summary.model_uri, "--text", texts[0], "--text", texts[1], "--tracking-uri", uri]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-2:]
    assert [line.split("\t")[0] for line in printed] == list(out["label"])
    assert [line.split("\t")[2] for line in printed] == texts
