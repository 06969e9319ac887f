"""Text data through `datasets`: label maps in sorted order, seeded stratified splits, sources, bad columns."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.errors import ConfigError
from tasks.registry import DATA_SOURCES
from tests.support.text_helpers import ham_spam_rows, write_csv


def _config(**data):
    return DATA_SOURCES.get(data["source"]).model_validate(data)


@pytest.fixture(scope="module")
def spam_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("text-data") / "spam.csv", ham_spam_rows(100, seed=1))


def _load(config, seed=0, base_dir=Path(".")):
    from tasks.data.text import load_text

    return load_text(config, seed, base_dir)


def test_string_labels_map_to_sorted_ids_and_splits_are_stratified(spam_csv):
    splits = _load(_config(source="csv", path=str(spam_csv), text_column="text", label_column="label",
                           split={"validation": 0.2, "test": 0.2}))
    assert splits.classes == ["ham", "spam"]
    assert splits.label2id == {"ham": 0, "spam": 1}
    assert splits.sizes() == {"train": 60, "validation": 20, "test": 20}
    for split in ("train", "validation", "test"):
        ds = splits.datasets[split]
        assert ds.column_names == ["text", "label"]
        counts = np.bincount(splits.labels(split), minlength=2)
        assert counts[0] == counts[1]  # 50/50 data, stratified
        for text, label in zip(ds["text"], ds["label"]):  # each id matches the text's class vocabulary
            assert ("spam" if label == 1 else "ham") == dict(ham_spam_rows(100, seed=1))[text]


def test_split_is_seeded(spam_csv):
    config = _config(source="csv", path=str(spam_csv), text_column="text", label_column="label")
    first, again, other = _load(config, seed=5), _load(config, seed=5), _load(config, seed=6)
    assert first.digest == again.digest
    assert first.datasets["test"]["text"] == again.datasets["test"]["text"]
    assert first.digest != other.digest


def test_max_samples_caps_each_split(spam_csv):
    splits = _load(_config(source="csv", path=str(spam_csv), text_column="text", label_column="label", max_samples=7))
    assert splits.sizes() == {"train": 7, "validation": 7, "test": 7}


def test_json_and_parquet_sources_give_the_same_data(spam_csv, tmp_path):
    import pandas as pd

    frame = pd.read_csv(spam_csv)
    frame.to_json(tmp_path / "spam.jsonl", orient="records", lines=True)
    frame.to_json(tmp_path / "spam.json", orient="records")
    frame.to_parquet(tmp_path / "spam.parquet")
    digests = {_load(_config(source=source, path=str(tmp_path / name), text_column="text", label_column="label")).digest
               for source, name in (("json", "spam.jsonl"), ("json", "spam.json"), ("parquet", "spam.parquet"))}
    digests.add(_load(_config(source="csv", path=str(spam_csv), text_column="text", label_column="label")).digest)
    assert len(digests) == 1


def test_own_splits_are_kept_class_names_come_from_the_dataset(tmp_path):
    """A dataset folder with train/test files and a ClassLabel: test kept, validation carved, -1 rows dropped."""
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    rows = ham_spam_rows(60, seed=2)
    train = datasets.Dataset.from_dict({"sentence": [t for t, _ in rows], "label": [int(l == "spam") for _, l in rows]},
                                       features=features)
    test = datasets.Dataset.from_dict({"sentence": ["free cash now", "lunch later", "no label here"],
                                       "label": [1, 0, -1]}, features=features)
    folder = tmp_path / "hub-like"
    (folder / "data").mkdir(parents=True)
    train.to_parquet(str(folder / "data" / "train-00000.parquet"))
    test.to_parquet(str(folder / "data" / "test-00000.parquet"))
    splits = _load(_config(source="hub", name=str(folder), text_column="sentence", label_column="label"))
    assert splits.classes == ["negative", "positive"]
    assert splits.datasets["test"]["sentence"] == ["free cash now", "lunch later"]
    assert splits.sizes()["train"] + splits.sizes()["validation"] == 60


def test_unknown_columns_are_config_errors_with_suggestions(tmp_path):
    import pandas as pd

    folder = tmp_path / "ds"
    folder.mkdir()
    pd.DataFrame({"sentence": ["a b", "c d"], "label": [0, 1]}).to_parquet(folder / "train.parquet")
    with pytest.raises(ConfigError) as err:
        _load(_config(source="hub", name=str(folder), text_column="sentense", label_column="labl"))
    text = str(err.value)
    assert "data.text_column: unknown column 'sentense'; did you mean 'sentence'?" in text
    assert "data.label_column: unknown column 'labl'" in text


def test_a_single_class_is_a_config_error(tmp_path):
    path = write_csv(tmp_path / "one.csv", [(f"text {i}", "ham") for i in range(12)])
    with pytest.raises(ConfigError, match=r"single class \('ham'\)"):
        _load(_config(source="csv", path=str(path), text_column="text", label_column="label"))


def test_describe_labels_counts_per_split(spam_csv):
    from tasks.data.text import describe_labels

    splits = _load(_config(source="csv", path=str(spam_csv), text_column="text", label_column="label",
                           split={"validation": 0.2, "test": 0.2}))
    described = describe_labels(splits)
    assert described["id2label"] == {"0": "ham", "1": "spam"}
    assert described["counts"]["test"] == {"ham": 10, "spam": 10}
