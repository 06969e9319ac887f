"""Bad configuration: each case exits 2 with clear lines naming file/line/key, no traceback, no MLflow run."""
from __future__ import annotations

import pytest

from flows.cli import main
from tests.support.helpers import TINY_IRIS, runs_of, write_pipelines


def _run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def _edit(old: str, new: str) -> str:
    assert old in TINY_IRIS
    return TINY_IRIS.replace(old, new)


# (case id, pipelines.yaml text, extra CLI args, fragments the message must contain)
CASES = [
    ("unknown-key-suggestion", _edit("hidden: [16]", "hiden: [16]"), [],
     ["pipelines.yaml:9:", "pipelines.iris-tiny.model.hiden", "did you mean 'hidden'"]),
    ("wrong-type", _edit("epochs: 4", "epochs: four"), [],
     ["pipelines.yaml:12:", "train.epochs", "valid integer", "'four'"]),
    ("negative-lr", _edit("lr: 0.02", "lr: -0.02"), [],
     ["pipelines.yaml:14:", "train.optimizer.lr", "greater than 0"]),
    ("empty-hidden", _edit("hidden: [16]", "hidden: []"), [],
     ["pipelines.yaml:9:", "model.hidden", "at least 1 item"]),
    ("unknown-model-type", _edit("type: mlp", "type: mpl"), [],
     ["pipelines.yaml:9:", "model.type", "unknown model type 'mpl'", "did you mean 'mlp'"]),
    ("unknown-source", _edit("source: sklearn", "source: sklern"), [],
     ["pipelines.yaml:6:", "data.source", "did you mean 'sklearn'"]),
    ("unknown-dataset", _edit("name: iris", "name: irs"), [],
     ["pipelines.yaml:6:", "data.name", "did you mean 'iris'"]),
    ("missing-data-file", _edit("{source: sklearn, name: iris}", "{source: csv, path: nope.csv, label_column: y}"), [],
     ["pipelines.yaml:6:", "data.path", "file not found", "nope.csv"]),
    ("dropout-range", _edit("activation: relu", "activation: relu, dropout: 1.5"), [],
     ["pipelines.yaml:9:", "model.dropout", "less than 1"]),
    ("bad-activation", _edit("activation: relu", "activation: rleu"), [],
     ["pipelines.yaml:9:", "model.activation", "did you mean 'relu'"]),
    ("invalid-cron", _edit("    description: tiny iris MLP for tests\n",
                           "    description: tiny iris MLP for tests\n    schedule: [{cron: '0 25 * * *'}]\n"), [],
     ["pipelines.yaml:6:", "schedule[0].cron", "invalid cron expression"]),
    ("unknown-metric", _edit("      optimizer: {name: adam, lr: 0.02}\n",
                             "      optimizer: {name: adam, lr: 0.02}\n    evaluate: {metrics: [acuracy]}\n"), [],
     ["pipelines.yaml:15:", "evaluate.metrics", "did you mean 'accuracy'"]),
    ("split-too-large", _edit("name: iris}", "name: iris, split: {validation: 0.5, test: 0.45}}"), [],
     ["pipelines.yaml:6:", "data.split", "at least 10% for training"]),
    ("missing-train", TINY_IRIS.split("    train:")[0], [],
     ["pipelines.yaml:4:", "pipelines.iris-tiny", "missing: train"]),
    ("unknown-top-level-key", "pipeline:\n  x: {}\n", [],
     ["pipelines.yaml:1:", "unknown top-level key 'pipeline'", "did you mean 'pipelines'"]),
    ("invalid-yaml-syntax", _edit("batch_size: 16", "batch_size: [16"), [],
     ["pipelines.yaml:1", "invalid YAML"]),
    ("duplicate-pipeline", TINY_IRIS + "  iris-tiny:\n    data: {source: sklearn, name: wine}\n", [],
     ["pipelines.yaml:15:", "duplicate key 'iris-tiny'", "first defined on line 4"]),
    ("custom-target-format", _edit("type: mlp, hidden: [16], activation: relu", "type: custom, target: mymodule.build"), [],
     ["pipelines.yaml:9:", "model.target", "package.module:callable"]),
    ("bad-set-syntax", TINY_IRIS, ["--set", "train.epochs"],
     ["--set 'train.epochs'", "expected KEY=VALUE"]),
    ("bad-set-value", TINY_IRIS, ["--set", "train.epochs=-3"],
     ["--set train.epochs=-3", "train.epochs", "greater than 0"]),
    ("set-unknown-key", TINY_IRIS, ["--set", "train.optimizer.lrr=0.1"],
     ["--set train.optimizer.lrr=0.1", "did you mean 'lr'"]),
]


@pytest.mark.parametrize("case_id,text,extra,fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_config_exits_2_with_located_message(case_id, text, extra, fragments, project_dir, tracking_uri, capsys):
    write_pipelines(project_dir, text)
    code, output = _run_cli(capsys, "run", "iris-tiny", *extra)
    assert code == 2, output
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    assert "Traceback" not in output
    assert all(line.startswith("error: ") for line in output.strip().splitlines()), output
    assert runs_of(tracking_uri) == []


def test_unknown_pipeline_name_suggests(project_dir, tracking_uri, capsys):
    write_pipelines(project_dir)
    code, output = _run_cli(capsys, "run", "iris-tiyn")
    assert code == 2
    assert "unknown pipeline 'iris-tiyn'; did you mean 'iris-tiny'?" in output
    assert runs_of(tracking_uri) == []


def test_unknown_column_lists_columns(project_dir, tracking_uri, capsys):
    (project_dir / "table.csv").write_text("a,b,target\n1,2,0\n3,4,1\n", encoding="utf-8")
    write_pipelines(project_dir, _edit("{source: sklearn, name: iris}",
                                       "{source: csv, path: table.csv, label_column: targt, features: [a, c]}"))
    code, output = _run_cli(capsys, "validate")
    assert code == 2
    assert "data.label_column: unknown column 'targt'; did you mean 'target'?" in output
    assert "data.features[1]: unknown column 'c'" in output
    assert "pipelines.yaml:6:" in output


def test_missing_pipelines_file(project_dir, capsys):
    code, output = _run_cli(capsys, "validate", "--file", "nowhere.yaml")
    assert code == 2
    assert "nowhere.yaml: file not found" in output


def test_all_errors_of_a_file_in_one_pass(project_dir, capsys):
    text = _edit("hidden: [16]", "hiden: [16]").replace("lr: 0.02", "lr: -1").replace("epochs: 4", "epochs: x")
    write_pipelines(project_dir, text)
    code, output = _run_cli(capsys, "validate")
    assert code == 2
    assert "model.hiden" in output and "optimizer.lr" in output and "train.epochs" in output


def test_defaults_error_points_at_defaults_line(project_dir, capsys):
    write_pipelines(project_dir, TINY_IRIS.replace("  seed: 7", "  seed: seven"))
    code, output = _run_cli(capsys, "validate")
    assert code == 2
    assert "pipelines.yaml:2: pipelines.iris-tiny.seed" in output


def test_valid_file_validates(project_dir, capsys):
    write_pipelines(project_dir)
    code, output = _run_cli(capsys, "validate")
    assert code == 0
    assert "1 pipeline(s) valid: iris-tiny" in output


def test_repository_pipelines_yaml_is_valid(capsys, monkeypatch):
    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT)
    code, output = _run_cli(capsys, "validate")
    assert code == 0, output
    assert "digits-mlp" in output and "diabetes-mlp" in output
