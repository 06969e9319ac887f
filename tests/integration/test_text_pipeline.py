"""Integration: a tiny fresh BERT on a ham/spam CSV through Prefect into MLflow, with `hf_trainer` and `torch`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.helpers import runs_of, tracking_uri_env
from tests.support.text_helpers import spam_project, text_pipelines, write_csv

EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "val_f1_macro")
EPOCHS = 3


@pytest.fixture(scope="module")
def text_project(tmp_path_factory, prefect_harness):
    """A project folder with a ham/spam CSV, a WordPiece tokenizer, and one run of each backend."""
    folder = tmp_path_factory.mktemp("text-project")
    spam_project(folder)
    yaml_text = text_pipelines(folder / "spam.csv", folder / "tokenizer", "hf_trainer", EPOCHS, name="spam-hf")
    yaml_text += text_pipelines(folder / "spam.csv", folder / "tokenizer", "torch", EPOCHS,
                                name="spam-torch").split("pipelines:\n", 1)[1]
    (folder / "pipelines.yaml").write_text(yaml_text, encoding="utf-8")
    from flows.pipeline import run_pipeline

    with tracking_uri_env(folder) as uri:
        summaries = {backend: run_pipeline(f"spam-{backend}", None, str(folder / "pipelines.yaml"))
                     for backend in ("hf", "torch")}
        yield folder, uri, summaries


def _run(uri: str, run_id: str):
    from mlflow import MlflowClient

    return MlflowClient(uri).get_run(run_id)


@pytest.mark.parametrize("backend", ["hf", "torch"])
def test_run_holds_params_epoch_metrics_and_test_metrics(text_project, backend):
    from mlflow import MlflowClient

    folder, uri, summaries = text_project
    run = _run(uri, summaries[backend].run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model.type"] == "hf_sequence_classification"
    assert params["train.backend"] == ("hf_trainer" if backend == "hf" else "torch")
    assert params["preprocess.0.max_length"] == "16"
    assert json.loads(params["data.id2label"]) == {"0": "ham", "1": "spam"}
    client = MlflowClient(uri)
    for name in EPOCH_METRICS:
        history = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in history] == list(range(1, EPOCHS + 1)), name
    assert run.data.metrics["test_accuracy"] >= 0.8  # the two vocabularies are easy to tell apart
    assert summaries[backend].metrics["test_accuracy"] == run.data.metrics["test_accuracy"]
    assert run.data.metrics["train_samples_per_s"] > 0


def test_both_backends_log_the_same_metric_names(text_project):
    folder, uri, summaries = text_project
    names = {b: set(_run(uri, s.run_id).data.metrics) for b, s in summaries.items()}
    assert names["hf"] == names["torch"]
    assert set(EPOCH_METRICS) <= names["hf"]


def test_one_mlflow_run_per_pipeline_run(text_project):
    folder, uri, summaries = text_project
    assert sorted(r.info.run_id for r in runs_of(uri)) == sorted(s.run_id for s in summaries.values())


def test_confusion_matrix_and_report_use_class_names(text_project):
    from mlflow import MlflowClient

    folder, uri, summaries = text_project
    client = MlflowClient(uri)
    run_id = summaries["hf"].run_id
    artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/learning_curve.png",
            "evaluation/evaluation_report.json"} <= artifacts
    report = json.loads(Path(client.download_artifacts(run_id, "evaluation/evaluation_report.json")).read_text())
    assert report["class_names"] == ["ham", "spam"]
    assert sum(map(sum, report["confusion_matrix"])) == report["sizes"]["test"] == 24
    labels = json.loads(Path(client.download_artifacts(run_id, "label_map.json")).read_text())
    assert labels["label2id"] == {"ham": 0, "spam": 1}


@pytest.mark.parametrize("backend", ["hf", "torch"])
def test_logged_model_predicts_the_string_labels(text_project, backend):
    import mlflow

    folder, uri, summaries = text_project
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(summaries[backend].model_uri)
    assert "transformers" in model.metadata.flavors
    out = model.predict(["great phone", "awful", "win free cash prize now", "see you at lunch tomorrow"])
    assert set(out["label"]) <= {"ham", "spam"}
    assert list(out["label"][2:]) == ["spam", "ham"]
    assert ((out["score"] > 0) & (out["score"] <= 1)).all()


def test_rerun_reused_the_tokenized_splits(text_project):
    """The second pipeline (same CSV, tokenizer and tokenize options) found every split already tokenized."""
    folder, uri, summaries = text_project
    first = json.loads(_run(uri, summaries["hf"].run_id).data.tags["fuseflow.tokenize_cache"])
    second = json.loads(_run(uri, summaries["torch"].run_id).data.tags["fuseflow.tokenize_cache"])
    assert set(first.values()) == {"computed"}
    assert set(second.values()) == {"reused"}


def test_predict_command_prints_label_and_score(text_project, capsys, tmp_path):
    from flows.cli import main

    folder, uri, summaries = text_project
    model_uri = summaries["torch"].model_uri
    assert main(["predict", model_uri, "--tracking-uri", uri, "--text", "win free cash prize now",
                 "--text", "see you at lunch tomorrow"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[-2:]
    assert [line.split("\t")[0] for line in lines] == ["spam", "ham"]
    assert all(0 < float(line.split("\t")[1]) <= 1 for line in lines)

    texts = tmp_path / "texts.txt"
    texts.write_text("claim your free prize now\nsee you at home later\n", encoding="utf-8")
    assert main(["predict", model_uri, str(texts), "--tracking-uri", uri]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[-2:]
    assert [line.split("\t")[0] for line in lines] == ["spam", "ham"]
    write_csv(tmp_path / "texts.csv", [("win cash now", "?"), ("lunch at home", "?")], header=("text", "note"))
    assert main(["predict", model_uri, str(tmp_path / "texts.csv"), "--tracking-uri", uri]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.strip().splitlines()[-2:]] == ["spam", "ham"]


# --- bad input: one clear line, exit 2 (configuration) or 1 (found only at run time), no traceback -----------------

def _bad(folder: Path, name: str, **edits) -> Path:
    text = text_pipelines(folder / "spam.csv", folder / "tokenizer", "torch", 1, name=name)
    for old, new in edits.items():
        assert old.replace("__", " ") in text, old
        text = text.replace(old.replace("__", " "), new)
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _cli(capsys, path: Path, name: str) -> tuple[int, str]:
    from flows.cli import main

    code = main(["run", name, "--file", str(path)])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


@pytest.mark.parametrize("edit, expected", [
    ({"text_column:__text": "text_column: txt"}, "data.text_column: unknown column 'txt'; did you mean 'text'?"),
    ({"label_column:__label": "label_column: labels"}, "data.label_column: unknown column 'labels'"),
    ({"config:__{": "pretrained: ./no-such-model\n      x_config: {"}, "unknown key 'x_config'"),
])
def test_bad_columns_and_keys_exit_2_before_anything_runs(text_project, capsys, tracking_uri, edit, expected):
    folder, _, _ = text_project
    code, output = _cli(capsys, _bad(folder, "bad", **edit), "bad")
    assert code == 2
    assert expected in output
    assert "Traceback" not in output
    assert runs_of(tracking_uri) == []


def test_missing_model_folder_exits_2(text_project, capsys, tracking_uri):
    folder, _, _ = text_project
    path = folder / "missing-model.yaml"
    text = text_pipelines(folder / "spam.csv", folder / "tokenizer", "torch", 1, name="missing")
    text = text.replace(f"tokenizer: {folder / 'tokenizer'}", "tokenizer: ./no-such-folder")
    path.write_text(text, encoding="utf-8")
    code, output = _cli(capsys, path, "missing")
    assert code == 2
    assert "model.tokenizer: model folder not found" in output and "no-such-folder" in output
    assert "Traceback" not in output and runs_of(tracking_uri) == []


def test_hub_id_unreachable_offline_exits_1_with_one_line(text_project, capsys, tracking_uri):
    folder, _, _ = text_project
    path = folder / "offline.yaml"
    text = text_pipelines(folder / "spam.csv", folder / "tokenizer", "torch", 1, name="offline")
    text = text.replace(f"tokenizer: {folder / 'tokenizer'}", "tokenizer: fuseflow-no-such-org/no-such-model")
    path.write_text(text, encoding="utf-8")
    code, output = _cli(capsys, path, "offline")
    assert code == 1
    error_lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "cannot load tokenizer 'fuseflow-no-such-org/no-such-model'" in error_lines[0]
    assert "HF_HUB_OFFLINE" in error_lines[0] and "Traceback" not in output
    assert [r.info.status for r in runs_of(tracking_uri)] == ["FAILED"]


def test_label_column_with_one_class_exits_2(text_project, capsys, tracking_uri):
    folder, _, _ = text_project
    write_csv(folder / "all-ham.csv", [(f"see you at lunch {i}", "ham") for i in range(30)])
    path = folder / "one-class.yaml"
    path.write_text(text_pipelines(folder / "all-ham.csv", folder / "tokenizer", "torch", 1, name="one"), encoding="utf-8")
    code, output = _cli(capsys, path, "one")
    assert code == 2
    assert "data.label_column: label column 'label' has a single class ('ham')" in output
    assert "Traceback" not in output
