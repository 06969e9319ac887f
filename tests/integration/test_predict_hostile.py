"""`fuseflow predict` on hostile input files, against one tiny iris model trained for this module: columns are matched
by name (a reordered or widened file predicts what the plain one does, a file without a header loses no row), and
every file the model would silently get wrong exits 2 with one located line, no traceback and no new MLflow run."""
from __future__ import annotations

import json

import pytest

from flows.cli import main
from tests.support.helpers import runs_of, tracking_uri_env, write_pipelines

ROWS = [0, 50, 100]  # one iris flower of each species


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory, prefect_harness):
    """(folder, tracking URI, model URI, the iris feature frame of ROWS) for one finished iris-tiny run."""
    from sklearn.datasets import load_iris

    from flows.pipeline import run_pipeline

    folder = tmp_path_factory.mktemp("predict-hostile")
    write_pipelines(folder)
    with tracking_uri_env(folder) as uri:
        summary = run_pipeline("iris-tiny", None, str(folder / "pipelines.yaml"))
        frame = load_iris(as_frame=True).data.iloc[ROWS].reset_index(drop=True)
        yield folder, uri, summary.model_uri, frame


def _predict(capsys, model, *argv: str) -> tuple[int, str, str]:
    folder, uri, model_uri, _ = model
    code = main(["predict", model_uri, *argv, "--tracking-uri", uri])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _expected(capsys, iris_model) -> list[str]:
    """What the model predicts for ROWS written plainly (header, the model's column order)."""
    folder, _, _, frame = iris_model
    path = folder / "plain.csv"
    frame.to_csv(path, index=False)
    code, out, err = _predict(capsys, iris_model, str(path))
    assert code == 0, err
    return out.split("\n")[:-1]


def _write(folder, name: str, content: str | bytes):
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@pytest.mark.parametrize("case", ["reordered", "extra-column", "no-header", "json-records-reordered"])
def test_columns_are_matched_by_name_and_no_row_is_lost(case, iris_model, capsys):
    folder, uri, _, frame = iris_model
    expected = _expected(capsys, iris_model)
    assert len(expected) == 3 and set(expected) <= {"setosa", "versicolor", "virginica"}
    before = len(runs_of(uri))
    path = folder / f"{case}.{'json' if case.startswith('json') else 'csv'}"
    if case == "reordered":
        frame[list(frame.columns)[::-1]].to_csv(path, index=False)
    elif case == "extra-column":
        frame.assign(species=["a", "b", "c"])[["species", *frame.columns]].to_csv(path, index=False)
    elif case == "no-header":
        frame.to_csv(path, index=False, header=False)
    else:
        path.write_text(json.dumps(frame[list(frame.columns)[::-1]].to_dict(orient="records")), encoding="utf-8")
    code, out, err = _predict(capsys, iris_model, str(path))
    assert code == 0, err
    assert out.split("\n")[:-1] == expected
    assert "Traceback" not in out + err
    assert ("ignoring column(s) the model does not take: species" in err) == (case == "extra-column")
    assert len(runs_of(uri)) == before


def _cells(frame, row: int, column: int, value: str) -> str:
    text = frame.astype(object)
    text.iloc[row, column] = value
    return text.to_csv(index=False)


CASES = [  # (case id, file name, content from the ROWS frame, fragments of the one error)
    ("missing-column", "rows.csv", lambda f: f.drop(columns=["petal width (cm)"]).to_csv(index=False),
     ["rows.csv: missing column(s) the model needs: petal width (cm)"]),
    ("no-header-wrong-count", "rows.csv", lambda f: f.iloc[:, :3].to_csv(index=False, header=False),
     ["rows.csv: 3 values per row, but the model takes 4 features", "sepal length (cm)"]),
    ("string-cell", "rows.csv", lambda f: _cells(f, 1, 2, "abc"),
     ["rows.csv:3: row 2, column 'petal length (cm)': 'abc' is not a number"]),
    ("nan-cell", "rows.csv", lambda f: _cells(f, 2, 1, "NaN"),
     ["rows.csv:4: row 3, column 'sepal width (cm)': missing value", "NaN"]),
    ("empty-cell", "rows.csv", lambda f: _cells(f, 0, 0, ""), ["rows.csv:2: row 1, column 'sepal length (cm)'"]),
    ("json-null", "rows.json", lambda f: json.dumps([{**r, "sepal width (cm)": None} for r in f.to_dict("records")]),
     ["rows.json: row 1, column 'sepal width (cm)': missing value"]),
    ("empty-file", "rows.csv", lambda f: "", ["rows.csv: the file is empty"]),
    ("header-only", "rows.csv", lambda f: f.iloc[:0].to_csv(index=False), ["rows.csv: no rows to predict"]),
    ("ragged-row", "rows.csv", lambda f: f.to_csv(index=False) + "1,2,3,4,5\n", ["rows.csv:5: 5 values in this row"]),
    ("malformed-json", "rows.json", lambda f: '[{"sepal length (cm)": 5.1,\n]', ["rows.json:2: not valid JSON"]),
    ("malformed-json-lines", "rows.jsonl", lambda f: json.dumps(f.to_dict("records")[0]) + "\n{oops}\n",
     ["rows.jsonl:2: not valid JSON"]),
    ("not-utf8", "rows.csv", lambda f: f.to_csv(index=False).encode() + b"\xff,1,2,3\n", ["rows.csv:5: not valid UTF-8"]),
    ("folder", "rows.d", None, ["rows.d: is a folder"]),
    ("missing-file", "nowhere.csv", False, ["input file not found"]),
]


@pytest.mark.parametrize("case_id,name,content,fragments", CASES, ids=[c[0] for c in CASES])
def test_hostile_rows_exit_2_with_the_row_and_column(case_id, name, content, fragments, iris_model, capsys):
    folder, uri, _, frame = iris_model
    target = folder / case_id
    target.mkdir(exist_ok=True)
    path = target / name
    if content is None:
        path.mkdir(exist_ok=True)
    elif content is not False:
        _write(target, name, content(frame.copy()))
    before = len(runs_of(uri))
    code, out, err = _predict(capsys, iris_model, str(path))
    assert code == 2, out + err
    for fragment in fragments:
        assert fragment in err, err
    assert out == "" and "Traceback" not in err
    assert all(line.startswith("error: ") for line in err.strip().splitlines()), err
    assert len(runs_of(uri)) == before


def test_input_file_and_text_together_are_refused(iris_model, capsys):
    folder = iris_model[0]
    path = folder / "both.csv"
    iris_model[3].to_csv(path, index=False)
    code, out, err = _predict(capsys, iris_model, str(path), "--text", "hello")
    assert code == 2 and "give an INPUT file or --text, not both" in err and "Traceback" not in err
