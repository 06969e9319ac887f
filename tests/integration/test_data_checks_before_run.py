"""Data-level errors are found before the MLflow run is created (issue 17): a table with one row or only a header, a
label with one class or no values, a split left without rows or without a second class in train, NaN labels, no
feature left. `fuseflow run` exits 2 with one located line (the pipelines file, the line of the pipeline's `data:`
section or its key, what is wrong and what to change) and leaves no MLflow run, FAILED or other, behind.
Each table is built here, tiny, in the test's own folder."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from tests.support.helpers import assert_config_error, write_pipelines
from tests.support.text_helpers import TINY_BERT, train_tokenizer

#: line 4 is `data:`, line 6 `path:`, line 7 `label_column:`; EXTRA data keys start at line 8
TABLE_PIPELINE = """\
pipelines:
  tiny:
    seed: {seed}
    data:
      source: {source}
      {where}
      label_column: y{extra}
    model: {{type: mlp, hidden: [4]}}
    train: {{backend: torch, epochs: 1, batch_size: 4}}
"""
TEXT_MODEL = f"""\
    preprocess: [{{tokenize: {{max_length: 16}}}}]
    model: {{type: hf_sequence_classification, config: {json.dumps(TINY_BERT)}, tokenizer: TOKENIZER}}
    train: {{backend: torch, epochs: 1, batch_size: 4}}
"""
DATA_LINE, PATH_LINE, LABEL_LINE, EXTRA_LINE = 4, 6, 7, 8


def rows(n: int, labels: list) -> pd.DataFrame:
    """`n` rows: two numeric features (repeating, so neither is taken for a row id) and the label `y`, cycling
    through `labels` (None: a missing label)."""
    return pd.DataFrame({"a": [i % 7 for i in range(n)], "b": [round(i * 1.37 % 5, 2) for i in range(n)],
                         "y": [labels[i % len(labels)] for i in range(n)]})


def one_rare(n: int = 30) -> pd.DataFrame:
    """`n` rows of class x and one of class z (too few to stratify): with seed 3 the z row is held out."""
    frame = rows(n, ["x"])
    frame.loc[5, "y"] = "z"
    return frame


def csv(frame: pd.DataFrame) -> Callable[[Path], str]:
    def write(folder: Path) -> str:
        frame.to_csv(folder / "rows.csv", index=False)
        return "path: rows.csv"
    return write


def raw(text: str, name: str = "rows.csv") -> Callable[[Path], str]:
    def write(folder: Path) -> str:
        (folder / name).write_text(text, encoding="utf-8")
        return f"path: {name}"
    return write


def sqlite(frame: pd.DataFrame) -> Callable[[Path], str]:
    def write(folder: Path) -> str:
        import sqlalchemy

        engine = sqlalchemy.create_engine(f"sqlite:///{folder / 'rows.db'}")
        frame.to_sql("rows", engine, index=False)
        engine.dispose()
        return "url: sqlite:///rows.db"
    return write


def text_rows(labels: list, n: int | None = None) -> list[dict]:
    n = len(labels) if n is None else n
    return [{"t": f"see you at lunch {i}", "y": labels[i % len(labels)]} for i in range(n)]


def jsonl(records: list[dict]) -> Callable[[Path], str]:
    """JSON Lines as Python's json writes them: a missing label is `NaN`, as pandas and many exporters write it."""
    return raw("\n".join(json.dumps(r) for r in records) + "\n", "rows.jsonl")


# id, source, data writer, extra data keys, text?, seed, expected line, fragments (what is wrong, the fix)
CASES = [
    ("one-row", "csv", csv(rows(1, ["x"])), "", False, 1, DATA_LINE,
     ["pipelines.tiny.data: the data has 1 row", "leave no rows for train", "add rows (at least 4 are needed)"]),
    ("header-only", "csv", raw("a,b,y\n"), "", False, 1, PATH_LINE,
     ["has no rows (only a header)", "point `path` at a file with data rows"]),
    ("header-only-text", "csv", raw("t,y\n"), "\n      text_column: t", True, 1, PATH_LINE,
     ["has no rows (only a header)", "point `path` at a file with data rows"]),
    ("one-class", "csv", csv(rows(30, ["x"])), "", False, 1, LABEL_LINE,
     ["label column 'y' has a single class ('x') in all 30 labelled rows", "add rows of another class"]),
    ("one-class-text", "csv", raw("t,y\n" + "".join(f"see you {i},ham\n" for i in range(30))),
     "\n      text_column: t", True, 1, LABEL_LINE,
     ["label column 'y' has a single class ('ham') in all 30 labelled rows", "add rows of another class"]),
    ("one-class-sql", "sql", sqlite(rows(30, ["x"])), "\n      table: rows", False, 1, LABEL_LINE,
     ["label column 'y' has a single class ('x')", "add rows of another class"]),
    ("split-without-rows", "csv", csv(rows(3, ["x", "z"])), "", False, 1, DATA_LINE,
     ["the data has 3 rows", "leave no rows for validation", "at least 4 are needed",
      "or raise `split.validation` and `split.test`"]),
    ("split-without-rows-text", "csv", raw("t,y\na b,x\nc d,z\ne f,x\n"), "\n      text_column: t", True, 1, DATA_LINE,
     ["the data has 3 rows", "leave no rows for validation", "at least 4 are needed"]),
    ("large-held-out-fractions", "csv", csv(rows(9, ["x", "z"])), "\n      split: {validation: 0.45, test: 0.44}",
     False, 1, DATA_LINE, ["the data has 9 rows", "leave no rows for train", "at least 10 are needed",
                           "or lower `split.validation` and `split.test`"]),
    ("too-few-groups", "csv", csv(rows(30, ["x", "z"]).assign(g=[i % 3 for i in range(30)])),
     "\n      split: {group_by: g}", False, 1, EXTRA_LINE,
     ["pipelines.tiny.data.split.group_by: split.group_by 'g' has 3 groups", "leave no groups for validation",
      "add groups (at least 4 are needed)"]),
    ("training-split-with-one-class", "csv", csv(one_rare()), "", False, 3, LABEL_LINE,
     ["label column 'y' has 2 classes ('x': 29, 'z': 1), but the training split holds only 'x'",
      "add rows of the other classes"]),
    ("training-split-capped-to-one-class", "csv", csv(rows(30, ["x", "z"])), "\n      max_samples: {train: 1}",
     False, 1, LABEL_LINE, ["the training split holds only", "or raise `max_samples` for train"]),
    ("missing-labels-leave-too-few-rows", "csv", csv(rows(5, ["x", None, "z", None, None])), "", False, 1, DATA_LINE,
     ["the data has 2 usable rows (3 dropped before the split: 3 with a missing label)", "add rows"]),
    ("nan-labels-text", "json", jsonl(text_rows(["ham", float("nan"), "spam", float("nan"), float("nan")])),
     "\n      text_column: t", True, 1, DATA_LINE, ["the data has 2 rows", "add rows (at least 4 are needed)"]),
    ("all-labels-nan-text", "json", jsonl(text_rows([float("nan")], 20)), "\n      text_column: t", True, 1,
     LABEL_LINE, ["label column 'y' has no values in the training split",
                  "check that `label_column` names the column to predict"]),
    ("all-labels-missing-sql", "sql", sqlite(rows(20, [None])), "\n      table: rows", False, 1, LABEL_LINE,
     ["label column 'y' has no values (all 20 cells are missing)",
      "check that `label_column` names the column to predict"]),
    ("no-feature-left", "csv", csv(pd.DataFrame({"id": range(30), "y": ["x", "z"] * 15})), "", False, 1, DATA_LINE,
     ["no feature is left: every column is dropped ('id' (inferred: a unique integer per row",
      "declare the columns to keep, e.g. `features: {id: numeric}`"]),
]


@pytest.fixture(scope="module")
def prefect_logging(prefect_harness) -> None:
    """Prefect's console handlers made once, outside `capsys` (they keep the stream they were made with, and each
    test's `capsys` stream is closed when the test ends); the `error:` lines are printed, and captured, all the same."""
    from prefect.logging.configuration import setup_logging

    setup_logging()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tokenizer")
    return train_tokenizer(folder / "tokenizer", [f"see you at lunch {i} a b c d e f ham spam" for i in range(40)])


def write_case(folder: Path, source: str, write: Callable[[Path], str], extra: str, text: bool, seed: int,
               tokenizer: Path) -> Path:
    pipeline = TABLE_PIPELINE.format(seed=seed, source=source, where=write(folder), extra=extra)
    if text:
        head, _, _ = pipeline.partition("    model:")
        pipeline = head + TEXT_MODEL.replace("TOKENIZER", str(tokenizer))
    return write_pipelines(folder, pipeline)


@pytest.mark.parametrize("source, write, extra, text, seed, line, fragments", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_a_data_problem_exits_2_on_one_located_line_and_leaves_no_run(source, write, extra, text, seed, line, fragments,
                                                                    prefect_logging, project_dir, tracking_uri,
                                                                    tokenizer, capsys):
    from flows.cli import main

    path = write_case(project_dir, source, write, extra, text, seed, tokenizer)
    code = main(["run", "tiny", "--file", str(path)])
    captured = capsys.readouterr()
    output = captured.err + captured.out
    errors = [row for row in captured.err.splitlines() if row.startswith("error: ")]
    assert len(errors) == 1, output
    assert errors[0].startswith(f"error: {path}:{line}: pipelines.tiny.data"), output
    assert_config_error(code, output, fragments, tracking_uri)  # exit 2, no traceback, no MLflow run at all
    assert not (project_dir / "mlruns").exists()


def test_tiny_data_splits_where_scikit_learn_cannot_stratify(tmp_path):
    """6 rows of two classes: stratifying the held-out rows (1 of each class) again is impossible; the split is then
    unstratified there instead of failing with scikit-learn's "least populated class" error."""
    from tasks.data.sources.files import CsvData
    from tasks.data.tabular import load_tabular

    rows(6, ["x", "z"]).to_csv(tmp_path / "rows.csv", index=False)
    splits = load_tabular(CsvData(source="csv", path="rows.csv", label_column="y", task="classification"), 1, tmp_path)
    assert splits.sizes() == {"train": 4, "validation": 1, "test": 1}
    assert set(splits.y["train"]) == {0, 1}


def test_nan_labels_of_a_text_source_are_dropped_not_a_class(tmp_path):
    """JSON Lines labels written as NaN (a missing value) are dropped like empty cells, never a class 'nan'."""
    from tasks.data.sources.files import JsonData
    from tasks.data.text import load_text

    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in text_rows([1, 0, float("nan")], 30)) + "\n", encoding="utf-8")
    splits = load_text(JsonData(source="json", path=str(path), text_column="t", label_column="y"), 1, tmp_path)
    assert "nan" not in splits.classes and len(splits.classes) == 2
    assert sum(splits.sizes().values()) == 20


#: a training pipeline, a sweep and a fusion of it, on one table: each line's number is the comment's
PARENT_PIPELINES = """\
pipelines:
  tiny:
    seed: 1
    data: {source: csv, path: rows.csv, label_column: y}   # 4
    model: {type: mlp, hidden: [4]}
    train: {backend: torch, epochs: 1, batch_size: 4}
  tiny-grid:
    seed: 1
    data: {source: csv, path: rows.csv, label_column: y}   # 9
    model: {type: mlp, hidden: [4]}
    train: {backend: torch, epochs: 1, batch_size: 4}
    sweep:
      parameters: {model.hidden: [[4], [8]], data.max_samples: %s}
      metric: val_loss
  tiny-tpe:
    seed: 1
    data: {source: csv, path: rows.csv, label_column: y}   # 17
    model: {type: mlp, hidden: [4]}
    train: {backend: torch, epochs: 1, batch_size: 4}
    sweep:
      sampler: tpe
      trials: 3
      parameters: {train.optimizer.lr: {distribution: loguniform, low: 1.0e-3, high: 1.0e-1}}
      metric: val_loss
  tiny-fusion:
    fusion:
      members:
        - pipeline: tiny   # 28
          set: {seed: 1}
        - pipeline: tiny
          set: {seed: 2}
      method: mean
"""

# id, rows, the grid's data.max_samples values, pipeline, expected line and key, fragments
PARENT_CASES = [
    ("grid-one-class", rows(30, ["x"]), "[null]", "tiny-grid", "9: pipelines.tiny-grid.data.label_column",
     ["label column 'y' has a single class ('x') in all 30 labelled rows"]),
    ("grid-trial-capped-to-one-class", rows(30, ["x", "z"]), "[null, {train: 1}]", "tiny-grid",
     "9: pipelines.tiny-grid.data.label_column",
     ["in trial-1 (model.hidden=[4], data.max_samples={\"train\": 1}): ", "the training split holds only"]),
    ("sampler-one-class", rows(30, ["x"]), "[null]", "tiny-tpe", "17: pipelines.tiny-tpe.data.label_column",
     ["label column 'y' has a single class ('x')"]),
    ("fusion-one-class", rows(30, ["x"]), "[null]", "tiny-fusion", "28: pipelines.tiny-fusion.fusion.members[0]",
     ["the members' shared data (of member ", "data.label_column: label column 'y' has a single class ('x')"]),
]


@pytest.mark.parametrize("frame, max_samples, pipeline, where, fragments", [c[1:] for c in PARENT_CASES],
                         ids=[c[0] for c in PARENT_CASES])
def test_a_sweep_or_fusion_checks_its_data_before_its_parent_run(frame, max_samples, pipeline, where, fragments,
                                                                  prefect_logging, project_dir, tracking_uri, capsys):
    """Sweeps and fusions loaded their data inside their trials' and members' runs: a data problem left a parent
    run and a FAILED nested run per trial or member. It is now a located config error before any run opens."""
    from flows.cli import main

    frame.to_csv(project_dir / "rows.csv", index=False)
    path = write_pipelines(project_dir, PARENT_PIPELINES % max_samples)
    code = main(["run", pipeline, "--file", str(path)])
    captured = capsys.readouterr()
    output = captured.err + captured.out
    errors = [row for row in captured.err.splitlines() if row.startswith("error: ")]
    assert len(errors) == 1, output
    assert errors[0].startswith(f"error: {path}:{where}: "), output
    assert_config_error(code, output, fragments, tracking_uri)
    assert not (project_dir / "mlruns").exists()


@pytest.mark.parametrize("parameters, loads", [
    ("{seed: [1, 2, 3], model.hidden: [[4], [8]]}", 1),  # the split seed is pinned: six trials, one data
    ("{data.max_samples: [20, 30], seed: [1, 2]}", 2),
    ("{data.split.seed: [1, 2, 3]}", 3),
], ids=["seeds-share-one-load", "each-data-size-loads", "each-split-seed-loads"])
def test_a_sweep_loads_each_distinct_data_once_before_its_run(parameters, loads, project_dir, monkeypatch):
    import flows.bodies.data as data
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve

    rows(30, ["x", "z"]).to_csv(project_dir / "rows.csv", index=False)
    path = write_pipelines(project_dir, PARENT_PIPELINES.replace(
        "{model.hidden: [[4], [8]], data.max_samples: %s}", parameters))
    seen = []
    monkeypatch.setattr(data, "load_training_data", lambda pipeline, base_dir: seen.append(pipeline.spec.data))
    data.check_sweep_data(resolve(load_project(path), "tiny-grid"), project_dir)
    assert len(seen) == loads, seen
