"""What can be known before a run is checked before a run: a boolean where a number belongs, seeds beyond 32 bits, an
early-stopping metric the trainer never logs, a loss or monitored metric that does not fit the task, the label among
the features, an unknown tracking URI scheme. Each is exit 2 from `validate` and from `run`, located, and no MLflow
run is created."""
from __future__ import annotations

import pytest

from flows.cli import main
from tests.support.helpers import TINY_IRIS, write_pipelines

DIABETES = TINY_IRIS.replace("name: iris}", "name: diabetes}")
CSV_PIPELINE = """\
pipelines:
  table:
    data: {source: csv, path: rows.csv, label_column: y, features: [a, b, y]}
    model: {type: mlp, hidden: [4]}
    train: {backend: torch, epochs: 1}
"""

CASES = [
    ("epochs-true", TINY_IRIS.replace("epochs: 4", "epochs: true"), ["train.epochs", "got `true` (a boolean)"]),
    ("batch-size-false", TINY_IRIS.replace("batch_size: 16", "batch_size: false"),
     ["train.batch_size", "got `false` (a boolean)"]),
    ("lr-true", TINY_IRIS.replace("lr: 0.02", "lr: true"), ["train.optimizer.lr", "(a boolean)"]),
    ("hidden-width-true", TINY_IRIS.replace("hidden: [16]", "hidden: [true]"), ["model.hidden"]),
    ("split-fraction-true", TINY_IRIS.replace("name: iris}", "name: iris, split: {validation: true}}"),
     ["data.split.validation", "(a boolean)"]),
    ("seed-beyond-32-bits", TINY_IRIS.replace("seed: 7", "seed: 4294967296"),
     ["seed", "less than or equal to 4294967295"]),
    ("seed-negative", TINY_IRIS.replace("seed: 7", "seed: -1"), ["seed", "greater than or equal to 0"]),
    ("split-seed-beyond-32-bits", TINY_IRIS.replace("name: iris}", "name: iris, split: {seed: 1099511627776}}"),
     ["data.split.seed", "less than or equal to 4294967295"]),
    ("monitor-misspelt", TINY_IRIS + "      early_stopping: {monitor: val_acc}\n",
     ["train", "early_stopping.monitor: 'val_acc'", "did you mean 'val_accuracy'"]),
    ("monitor-of-the-other-task", DIABETES + "      early_stopping: {monitor: val_accuracy}\n",
     ["train.early_stopping.monitor", "not logged by a regression pipeline", "val_r2"]),
    ("cross-entropy-on-regression", DIABETES + "      loss: cross_entropy\n",
     ["train.loss", "'cross_entropy' does not fit a regression target", "use one of: mse"]),
    ("cross-entropy-on-declared-regression",
     TINY_IRIS.replace("name: iris}", "name: iris, task: regression}") + "      loss: cross_entropy\n",
     ["train.loss", "does not fit a regression target"]),
    ("unknown-tracking-scheme", TINY_IRIS + "    tracking: {uri: 'ftp://127.0.0.1/store'}\n",
     ["tracking.uri", "unknown tracking URI scheme 'ftp://'", "sqlite://"]),
    ("misspelt-tracking-scheme", TINY_IRIS + "    tracking: {uri: 'htp://127.0.0.1:5000'}\n",
     ["tracking.uri", "'htp://'"]),
]


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("text,fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_found_before_any_run(text, fragments, command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_pipelines(tmp_path, text)
    argv = ["validate", "--file", str(path)] if command == "validate" else ["run", "iris-tiny", "--file", str(path)]
    code = main(argv)
    out = capsys.readouterr()
    text_out = out.err + out.out
    assert code == 2, text_out
    for fragment in fragments:
        assert fragment in text_out, f"{fragment!r} not in:\n{text_out}"
    assert "pipelines.yaml:" in text_out and "Traceback" not in text_out
    assert not (tmp_path / "mlruns").exists()


def test_the_label_among_the_features_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rows.csv").write_text("a,b,y\n1,2,0\n3,4,1\n", encoding="utf-8")
    path = write_pipelines(tmp_path, CSV_PIPELINE)
    for argv in (["validate", "--file", str(path)], ["run", "table", "--file", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "data" in err and "`features` lists the label column 'y'" in err, err
    assert not (tmp_path / "mlruns").exists()


def test_a_boolean_set_on_the_command_line_names_the_set(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_pipelines(tmp_path, TINY_IRIS)
    assert main(["run", "iris-tiny", "--file", str(path), "--set", "train.epochs=yes"]) == 2
    err = capsys.readouterr().err
    assert "--set train.epochs=yes" in err and "(a boolean)" in err, err


@pytest.mark.parametrize("uri", ["sqlite:///other.db", "postgresql+psycopg://me@db:5432/mlflow", "http://127.0.0.1:5000",
                                 "file:///tmp/store", "./mlruns-elsewhere"])
def test_known_tracking_schemes_and_booleans_where_booleans_belong_are_accepted(uri, tmp_path, capsys):
    text = TINY_IRIS.replace("name: iris}", "name: iris, split: {stratify: false}}") + f"    tracking: {{uri: '{uri}'}}\n"
    assert main(["validate", "--file", str(write_pipelines(tmp_path, text))]) == 0, capsys.readouterr().err


CUSTOM = """\
pipelines:
  iris-tiny:
    data: {source: sklearn, name: iris}
    model: {type: custom, target: "tinynet:TARGET"}
    train: {backend: torch, epochs: 1}
"""

TINYNET = """\
import torch.nn as nn

try:
    from torch.nn import Identity
except ImportError:
    Identity = None


def build(in_features, out_features):
    return nn.Linear(in_features, out_features)


class Net(nn.Linear):
    @staticmethod
    def make(in_features, out_features):
        return Net(in_features, out_features)


if __name__ == "__main__":
    print(build(4, 3))
"""


@pytest.mark.parametrize("target, fragment", [
    ("biuld", "module 'tinynet'"),
    ("biuld", "defines no 'biuld'; did you mean 'build'?"),
    ("Nte.make", "defines no 'Nte'; did you mean 'Net'?"),
])
def test_a_custom_target_whose_name_is_missing_is_refused_before_the_run(target, fragment, tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "tinynet.py").write_text(TINYNET)
    path = write_pipelines(tmp_path, CUSTOM.replace("TARGET", target))
    assert main(["validate", "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert "iris-tiny.model.target" in err and fragment in err, err


@pytest.mark.parametrize("target", ["build", "Net.make", "Identity", "nn"])
def test_custom_targets_the_module_binds_are_accepted(target, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "tinynet.py").write_text(TINYNET)
    path = write_pipelines(tmp_path, CUSTOM.replace("TARGET", target))
    assert main(["validate", "--file", str(path)]) == 0, capsys.readouterr().err


def test_a_module_that_binds_names_dynamically_is_not_second_guessed(tmp_path):
    from tasks.models.custom import top_level_names

    (tmp_path / "star.py").write_text("from math import *\n")
    (tmp_path / "lazy.py").write_text("def __getattr__(name):\n    return name\n")
    assert top_level_names(tmp_path / "star.py") is None
    assert top_level_names(tmp_path / "lazy.py") is None
    assert top_level_names(tmp_path / "absent.py") is None
