"""Data step: every source loads, splits are seeded and stratified, labels are encoded, errors are clear."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.data.sources.files import CsvData, JsonData, ParquetData
from tasks.data.sources.hub import HubData
from tasks.data.sources.scikit_learn import SklearnData
from tasks.data.tabular import load_tabular
from tasks.errors import ConfigError


@pytest.fixture
def table(tmp_path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "c"])
    frame["kind"] = np.where(frame["a"] + frame["b"] > 0, "spam", "ham")
    return frame


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
def test_file_sources_load_and_encode_string_labels(fmt, table, tmp_path):
    path = tmp_path / f"t.{fmt}"
    writer = {"csv": lambda: table.to_csv(path, index=False),
              "json": lambda: table.to_json(path, orient="records"),
              "jsonl": lambda: table.to_json(path, orient="records", lines=True),
              "parquet": lambda: table.to_parquet(path)}[fmt]
    writer()
    cls = {"csv": CsvData, "json": JsonData, "jsonl": JsonData, "parquet": ParquetData}[fmt]
    config = cls(source="json" if fmt == "jsonl" else fmt, path=path.name, label_column="kind", features=["a", "b"])
    splits = load_tabular(config, seed=1, base_dir=tmp_path)
    assert splits.task == "classification"
    assert splits.classes == ["ham", "spam"]
    assert splits.feature_names == ["a", "b"]
    assert sum(splits.sizes().values()) == 120
    assert splits.sizes()["test"] == 18 and splits.sizes()["validation"] == 18


def test_hub_source_reads_local_files_through_datasets(table, tmp_path):
    table.to_csv(tmp_path / "t.csv", index=False)
    config = HubData(source="hub", name="csv", data_files=str(tmp_path / "t.csv"), label_column="kind")
    splits = load_tabular(config, seed=0, base_dir=tmp_path)
    assert splits.classes == ["ham", "spam"] and splits.num_features == 3


def test_hub_source_offline_is_a_clear_runtime_error(tmp_path):
    with pytest.raises(RuntimeError, match="cannot load Hugging Face dataset 'someone/not-here'"):
        load_tabular(HubData(source="hub", name="someone/not-here"), seed=0, base_dir=tmp_path)


def test_split_is_seeded_and_stratified():
    config = SklearnData(source="sklearn", name="digits")
    a, b, c = (load_tabular(config, seed=s, base_dir=None) for s in (3, 3, 4))
    assert np.array_equal(a.y["test"], b.y["test"]) and np.array_equal(a.X["train"], b.X["train"])
    assert not np.array_equal(a.y["test"], c.y["test"])
    # stratified: every split keeps the overall class proportions (within 2 samples per class)
    overall = np.bincount(np.concatenate(list(a.y.values())), minlength=10) / 1797
    for split in ("train", "validation", "test"):
        counts = np.bincount(a.y[split], minlength=10)
        assert np.abs(counts - overall * len(a.y[split])).max() <= 2


def test_regression_is_inferred_for_float_targets(tmp_path):
    frame = pd.DataFrame({"x": np.arange(50.0), "y": np.arange(50.0) * 1.5 + 0.25})
    frame.to_csv(tmp_path / "r.csv", index=False)
    splits = load_tabular(CsvData(source="csv", path="r.csv", label_column="y"), seed=0, base_dir=tmp_path)
    assert splits.task == "regression" and splits.num_outputs == 1 and splits.y["train"].dtype == np.float32


def test_single_class_label_is_a_config_error(tmp_path):
    pd.DataFrame({"x": range(10), "y": ["a"] * 10}).to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(ConfigError, match="single class"):
        load_tabular(CsvData(source="csv", path="one.csv", label_column="y"), seed=0, base_dir=tmp_path)


def test_a_string_column_of_two_values_becomes_one_binary_input(tmp_path):
    pd.DataFrame({"x": ["u", "v"] * 10, "y": [0, 1] * 10}).to_csv(tmp_path / "s.csv", index=False)
    splits = load_tabular(CsvData(source="csv", path="s.csv", label_column="y"), seed=0, base_dir=tmp_path)
    assert splits.feature_names == ["x"]
    assert set(np.unique(splits.X["train"])) == {0.0, 1.0}


def test_max_samples_caps_each_split():
    splits = load_tabular(SklearnData(source="sklearn", name="digits", max_samples=40), seed=0, base_dir=None)
    assert splits.sizes() == {"train": 40, "validation": 40, "test": 40}


def test_standardize_is_fitted_on_train_only():
    from tasks.data.preprocess.standardize import StandardizeConfig
    from tasks.data.scaling import fit_preprocess

    raw = load_tabular(SklearnData(source="sklearn", name="wine"), seed=0, base_dir=None)
    scaled, scaling = fit_preprocess([StandardizeConfig()], raw, "auto")
    assert np.allclose(scaled.X["train"].mean(0), 0, atol=1e-5)
    assert not np.allclose(scaled.X["test"].mean(0), 0, atol=1e-3)
    assert np.allclose(scaling.feature_mean, raw.X["train"].mean(0), rtol=1e-5)


def test_steps_compose_their_scaling_so_the_logged_model_repeats_them():
    """Two steps in a row: the recorded scaling applied to raw rows gives what the steps gave (a logged model
    carries only `FittedScaling`)."""
    from tasks.data.preprocess.standardize import StandardizeConfig
    from tasks.data.scaling import fit_preprocess

    raw = load_tabular(SklearnData(source="sklearn", name="wine"), seed=0, base_dir=None)
    raw.X["train"] = raw.X["train"] * 3.0 + 5.0  # the second step then sees data that is not yet unit scale
    steps = [StandardizeConfig(with_std=False), StandardizeConfig()]
    scaled, scaling = fit_preprocess(steps, raw, "auto")
    again = (raw.X["test"] - np.asarray(scaling.feature_mean)) / np.asarray(scaling.feature_scale)
    assert np.allclose(again, scaled.X["test"], atol=1e-4)
    assert np.allclose(scaled.X["train"].std(0), 1, atol=1e-3)


@pytest.mark.parametrize("value, sizes", [
    (20, {"train": 20, "validation": 20, "test": 20}),
    ({"train": 50, "test": 10}, {"train": 50, "validation": 22, "test": 10}),
])
def test_max_samples_caps_every_split_or_each_named_one(value, sizes):
    config = SklearnData(source="sklearn", name="iris", max_samples=value)
    splits = load_tabular(config, 0, None)
    assert {name: len(splits.y[name]) for name in ("train", "validation", "test")} == sizes


@pytest.mark.parametrize("value, fragment", [
    ({"train": 0}, "greater than 0"),
    ({"trian": 5}, "trian"),
    (True, "boolean"),
    (-3, "greater than 0"),
])
def test_max_samples_is_checked_before_the_run(value, fragment):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        SklearnData(source="sklearn", name="iris", max_samples=value)
    assert fragment in str(err.value)
