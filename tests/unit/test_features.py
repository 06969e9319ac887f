"""Unit: typed table features: missing-cell strategies, encodings, unseen values, train-only statistics, the JSON
round trip of the fitted state, the load path (label rows dropped, `drop_row`, `split.group_by`), `standardize`
on scalable columns only, the embedding front end, and the raw-row predictor. Small messy frames, no Prefect,
no MLflow, no training (a forward pass at most).

Type inference and config errors: tests/unit/test_features_infer.py."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tasks.registry import FEATURE_TYPES, load_components

load_components()  # every registry complete before a config schema is first built (as `resolve` does)

from tasks.data.features.fitted import ColumnPlan, FittedFeatures, plan_columns  # noqa: E402
from tasks.data.features.spec import TableColumns  # noqa: E402
from tasks.data.features.types.category import embedding_dim  # noqa: E402


def messy_table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """A customer table as `pd.read_csv` gives it: a pandas index column, an id, NaN/None in numbers, strings and
    dates, a bool column, free-text e-mails, a yes/no label."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "Unnamed: 0": np.arange(n),
        "customer_id": rng.permutation(np.arange(5000, 5000 + n)),
        "age": rng.integers(18, 80, n).astype(float),
        "income": rng.normal(50_000, 12_000, n).round(2),
        "region": rng.choice(["north", "south", "east", "west"], n).astype(object),
        "plan": rng.choice(["basic", "pro"], n).astype(object),
        "member": rng.random(n) > 0.5,
        "signup": [str(d.date()) for d in pd.date_range("2021-01-01", periods=n, freq="5D")],
        "email": [f"user{i}@mail.example" for i in range(n)],
        "churn": rng.choice(["yes", "no"], n).astype(object),
    })
    frame.loc[[1, 7, 13], "age"] = np.nan
    frame.loc[[2, 8], "income"] = None
    frame.loc[[3, 9, 15], "region"] = None
    frame.loc[[4], "plan"] = np.nan
    frame.loc[[5, 11], "signup"] = None
    return frame


MESSY_FEATURES = {"Unnamed: 0": "auto", "customer_id": "auto", "age": "auto",
                  "income": {"type": "numeric", "missing": "mean", "indicator": True}, "region": "auto",
                  "plan": "auto", "member": "auto", "signup": "auto", "email": "drop"}


def fit_messy(frame: pd.DataFrame | None = None) -> tuple[FittedFeatures, pd.DataFrame]:
    frame = messy_table() if frame is None else frame
    columns = TableColumns.model_validate({"label_column": "churn", "features": MESSY_FEATURES})
    features, _ = columns.select(frame)
    plans, issues = plan_columns(features, columns)
    assert issues == []
    return FittedFeatures.fit(plans, features, features), features


def feature(spec: dict | str):
    """A feature type config as the YAML gives it (`numeric`, `{type: category, ...}`)."""
    value = FEATURE_TYPES.normalize(spec)
    return FEATURE_TYPES.get(value["type"]).model_validate(value)


def fit_one(spec: dict | str, train: list, name: str = "x") -> FittedFeatures:
    frame = pd.DataFrame({name: train})
    return FittedFeatures.fit([ColumnPlan(name, feature(spec))], frame, frame)


def encode(fitted: FittedFeatures, values: list, name: str = "x") -> np.ndarray:
    return fitted.transform(pd.DataFrame({name: values}))


# --- numeric: missing strategies, indicator, scaling -----------------------------------------------------------

@pytest.mark.parametrize("spec,fill", [
    ({"type": "numeric", "missing": "mean"}, 4.0),
    ({"type": "numeric", "missing": "median"}, 2.0),
    ({"type": "numeric", "missing": "constant", "fill_value": -1}, -1.0),
    ({"type": "numeric", "missing": "drop_row"}, 2.0),  # prediction rows are never dropped: the median stands in
])
def test_numeric_missing_cells_take_the_strategy_fill(spec, fill):
    fitted = fit_one(spec, [1.0, 2.0, np.nan, 9.0])
    assert fitted.columns[0]["state"]["fill"] == pytest.approx(fill)
    out = encode(fitted, [np.nan, None, 5.0])
    assert out.dtype == np.float32 and out.shape == (3, 1)
    np.testing.assert_allclose(out[:, 0], [fill, fill, 5.0])


def test_numeric_indicator_adds_a_fixed_was_missing_column():
    fitted = fit_one({"type": "numeric", "missing": "mean", "indicator": True}, [1.0, np.nan, 3.0])
    assert fitted.output_names == ["x", "x_missing"]
    assert [b.kind for b in fitted.blocks()] == ["scalable", "fixed"]
    np.testing.assert_array_equal(encode(fitted, [np.nan, 7.0]), np.array([[2.0, 1.0], [7.0, 0.0]], np.float32))


@pytest.mark.parametrize("spec,message", [
    ({"type": "numeric", "missing": "constant"}, "`missing: constant` needs `fill_value`"),
    ({"type": "numeric", "missing": "mean", "fill_value": 0}, "`fill_value` is used only with `missing: constant`"),
    ({"type": "category", "embedding_dim": 4}, "`embedding_dim` is used only with `encoding: embedding`"),
])
def test_inconsistent_type_options_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        feature(spec)


def test_numeric_cells_read_as_strings_parse_and_a_bad_cell_is_named():
    fitted = fit_one({"type": "numeric", "missing": "mean"}, ["1.5", " 2.5 ", "N/A", "", None])
    np.testing.assert_allclose(encode(fitted, ["n/a", "4"])[:, 0], [2.0, 4.0])
    with pytest.raises(ValueError, match=r"column 'x' is numeric, but row 1 holds 'abc'"):
        encode(fitted, ["3", "abc"])


@pytest.mark.parametrize("scaling", ["none", "standardize", "minmax"])
def test_numeric_scaling_is_fitted_on_train(scaling):
    train = [10.0, 20.0, 30.0, np.nan, 40.0]
    fitted = fit_one({"type": "numeric", "missing": "mean", "scaling": scaling}, train)
    out = encode(fitted, train)[:, 0]
    filled = np.array([10, 20, 30, 25, 40], dtype=np.float64)
    if scaling == "none":
        np.testing.assert_allclose(out, filled)
    elif scaling == "standardize":
        assert out.mean() == pytest.approx(0.0, abs=1e-6) and out.std() == pytest.approx(1.0, abs=1e-5)
    else:
        assert out.min() == pytest.approx(0.0) and out.max() == pytest.approx(1.0)
    # a column scaled by its own type is left alone by `standardize`; an unscaled one may be rescaled
    assert fitted.layout()["scalable"] == [scaling == "none"]


# --- category: missing strategies, one-hot, embedding ------------------------------------------------------------

@pytest.mark.parametrize("missing,names,missing_row", [
    ("most_frequent", ["x=a", "x=b", "x=c", "x=other"], [1, 0, 0, 0]),
    ("missing_category", ["x=a", "x=b", "x=c", "x=other", "x=missing"], [0, 0, 0, 0, 1]),
    ("drop_row", ["x=a", "x=b", "x=c", "x=other"], [1, 0, 0, 0]),
])
def test_category_missing_strategies(missing, names, missing_row):
    fitted = fit_one({"type": "category", "missing": missing}, ["a", "b", "a", None, "c", "  "])
    assert fitted.output_names == names
    out = encode(fitted, [None, np.nan, " ", "b"])
    for row in out[:3]:  # None, NaN and a blank cell are all missing
        np.testing.assert_array_equal(row, missing_row)
    assert out[3].tolist() == [float(n == "x=b") for n in names]


def test_one_hot_keeps_max_categories_most_frequent_and_folds_the_rest_into_other():
    train = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]
    fitted = fit_one({"type": "category", "max_categories": 2}, train)
    state = fitted.columns[0]["state"]
    assert state["categories"] == ["a", "b"] and state["folded"] == 2
    assert fitted.output_names == ["x=a", "x=b", "x=other", "x=missing"]
    out = encode(fitted, ["c", "d", "a"])
    np.testing.assert_array_equal(out, [[0, 0, 1, 0], [0, 0, 1, 0], [1, 0, 0, 0]])
    assert "2 rare folded into other" in feature({"type": "category", "max_categories": 2}).strategy(state)


def test_min_frequency_sends_values_seen_less_often_to_other():
    fitted = fit_one({"type": "category", "min_frequency": 3}, ["a"] * 4 + ["b"] * 3 + ["c"] * 2)
    assert fitted.columns[0]["state"]["categories"] == ["a", "b"]
    assert encode(fitted, ["c"])[0].tolist() == [0, 0, 1, 0]


def test_category_ties_are_ranked_by_value_and_integer_codes_match_float_cells():
    fitted = fit_one({"type": "category", "max_categories": 2}, [3, 1, 2, 3, 1, 2])
    assert fitted.columns[0]["state"]["categories"] == ["1", "2"]  # all seen twice: the first two by value
    out = encode(fitted, [1.0, 2.0, np.nan])  # the same codes read from a file with a missing cell are floats
    np.testing.assert_array_equal(out, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize("cardinality,dim", [(1, 2), (3, 3), (10, 6), (100, 21), (10_000, 50)])
def test_embedding_dim_rule(cardinality, dim):
    assert embedding_dim(cardinality) == dim


@pytest.mark.parametrize("missing,cardinality", [("missing_category", 5), ("most_frequent", 4)])
def test_embedding_block_counts_other_and_missing_buckets(missing, cardinality):
    spec = {"type": "category", "encoding": "embedding", "missing": missing}
    fitted = fit_one(spec, ["ios", "android", "web", "ios", None])
    (block,) = fitted.blocks()
    assert (block.kind, block.names, block.cardinality, block.dim) == ("embedding", ["x"], cardinality,
                                                                       embedding_dim(cardinality))
    codes = encode(fitted, ["ios", "android", "web", "blackberry", None])[:, 0]
    assert codes.tolist()[:4] == [0.0, 1.0, 2.0, 3.0]  # ios (seen twice), then android, web by value; unseen: other
    assert 0 <= codes.min() and codes.max() < cardinality
    assert fitted.layout()["embeddings"] == [{"column": 0, "cardinality": cardinality, "dim": block.dim}]


def test_embedding_dim_may_be_set():
    fitted = fit_one({"type": "category", "encoding": "embedding", "embedding_dim": 7}, ["a", "b", "c"])
    assert fitted.blocks()[0].dim == 7


# --- binary ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("train,cells,expected", [
    ([True, False, True], [True, False], [1, 0]),
    (["yes", "no", "yes"], ["no", "yes"], [0, 1]),
    (["N", "Y", "N"], ["Y", "N"], [1, 0]),
    ([0, 1, 1], [0.0, 1.0], [0, 1]),
    (["female", "male", "male"], ["female", "male"], [0, 1]),  # no "true" word: the second in sorted order is 1
    ([True, None, False, True], [None, False], [1, 0]),  # a missing cell takes the most frequent value
])
def test_binary_encodes_one_zero_one_input(train, cells, expected):
    fitted = fit_one("binary", train)
    assert fitted.output_names == ["x"] and fitted.blocks()[0].kind == "fixed"
    np.testing.assert_array_equal(encode(fitted, cells)[:, 0], expected)


def test_binary_with_three_values_says_to_type_it_category():
    with pytest.raises(ValueError, match=r"column 'x' is typed binary but holds 3 distinct values .*type it `category`"):
        fit_one("binary", ["a", "b", "c"])


# --- unseen values, train-only statistics, no NaN out ----------------------------------------------------------

@pytest.mark.parametrize("spec,unseen_row", [
    ({"type": "category"}, [0, 0, 1, 0]),
    ({"type": "category", "encoding": "embedding"}, [2]),
    ("binary", [1]),  # an unseen value takes the most frequent ("a" sorts first, so "b" = 1 is most frequent)
])
def test_unseen_values_go_to_the_other_bucket_without_error(spec, unseen_row):
    fitted = fit_one(spec, ["a", "b", "b"])
    np.testing.assert_array_equal(encode(fitted, ["never seen"])[0], unseen_row)


def test_statistics_come_from_train_only():
    train = pd.DataFrame({"n": [1.0, 2.0, 3.0, np.nan], "c": ["a", "a", "b", None],
                          "d": ["2020-01-06", "2020-03-02", "2020-05-04", None]})
    other = pd.DataFrame({"n": [100.0, np.nan], "c": ["z", "b"], "d": [None, "2030-12-31"]})
    plans = [ColumnPlan("n", feature({"type": "numeric", "missing": "mean", "scaling": "standardize"})),
             ColumnPlan("c", feature("category")), ColumnPlan("d", feature("datetime"))]
    fitted = FittedFeatures.fit(plans, train, train)
    out = fitted.transform(other)
    mean, std = 2.0, np.std([1.0, 2.0, 3.0, 2.0])
    np.testing.assert_allclose(out[:, 0], [(100.0 - mean) / std, 0.0], rtol=1e-5)  # NaN -> train mean -> 0
    assert fitted.output_names[1:5] == ["c=a", "c=b", "c=other", "c=missing"]
    np.testing.assert_array_equal(out[:, 1:5], [[0, 0, 1, 0], [0, 1, 0, 0]])  # "z" is not in train's vocabulary
    np.testing.assert_array_equal(out[0, 5:], [2020, 3, 0])  # missing date: train's median year, month, weekday
    np.testing.assert_array_equal(out[1, 5:], [2030, 12, 1])


def test_no_nan_reaches_the_matrix_of_a_messy_table():
    fitted, features = fit_messy()
    assert [c["config"]["type"] for c in fitted.columns] == ["drop", "drop", "numeric", "numeric", "category",
                                                           "binary", "binary", "datetime", "drop"]
    out = fitted.transform(features)
    assert out.shape == (60, len(fitted.output_names)) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert fitted.input_names == ["age", "income", "region", "plan", "member", "signup"]
    nullable = {i["name"]: i["nullable"] for i in fitted.inputs}
    assert nullable == {"age": True, "income": True, "region": True, "plan": True, "member": False, "signup": True}
    worse = features.copy()
    for name in ("age", "income", "region", "plan", "signup"):  # every cell a prediction may lack
        worse[name] = [None] * len(worse)
    assert np.isfinite(fitted.transform(worse)).all()


def test_json_roundtrip_gives_identical_transform_output():
    fitted, features = fit_messy()
    again = FittedFeatures.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again.output_names == fitted.output_names and again.layout() == fitted.layout()
    probe = features.assign(region=["mars"] + features["region"].tolist()[1:])
    np.testing.assert_array_equal(again.transform(probe), fitted.transform(probe))
    with pytest.raises(ValueError, match="not a fuseflow feature state"):
        FittedFeatures.from_dict({"format": "something-else/9", "columns": []})


def test_transform_ignores_extra_and_reordered_columns_and_names_a_missing_one():
    fitted, features = fit_messy()
    shuffled = features[features.columns[::-1]].assign(unused="x")
    np.testing.assert_array_equal(fitted.transform(shuffled), fitted.transform(features))
    with pytest.raises(ValueError, match=r"lack the model's input column\(s\) \['member'\]"):
        fitted.transform(features.drop(columns=["member"]))  # no missing cell in training: required


def test_an_omitted_nullable_column_is_all_missing():
    fitted, features = fit_messy()  # `region` had missing cells, so the signature makes it optional
    np.testing.assert_array_equal(fitted.transform(features.drop(columns=["region"])),
                                  fitted.transform(features.assign(region=None)))


# --- the load path -------------------------------------------------------------------------------------------------

def csv_config(tmp_path, frame: pd.DataFrame, **data):
    from tasks.registry import DATA_SOURCES

    frame.to_csv(tmp_path / "table.csv")  # with pandas' unnamed index column
    return DATA_SOURCES.get("csv").model_validate({"source": "csv", "path": "table.csv", **data})


def load(tmp_path, frame: pd.DataFrame, **data):
    from tasks.data.tabular import load_tabular

    return load_tabular(csv_config(tmp_path, frame, **data), 3, tmp_path)


def labelled_table(n: int = 90) -> pd.DataFrame:
    frame = messy_table(n).drop(columns=["Unnamed: 0", "email"])
    frame.loc[[0, 20], "churn"] = None
    frame.loc[[30], "churn"] = " "
    return frame


def test_load_drops_rows_without_a_label_and_counts_them(tmp_path):
    splits = load(tmp_path, labelled_table(), label_column="churn")
    assert splits.report["rows"] == 90 and splits.report["rows_dropped"] == {"label": 3}
    assert sum(splits.sizes().values()) == 87
    assert splits.classes == ["no", "yes"]
    assert all(np.isfinite(x).all() for x in splits.X.values())
    types = {row["column"]: row["type"] for row in splits.report["feature_table"]}
    assert types["Unnamed: 0"] == "drop" and types["customer_id"] == "drop" and types["signup"] == "datetime"


def test_drop_row_columns_remove_their_missing_rows_and_say_how_many(tmp_path):
    features = {"age": {"type": "numeric", "missing": "drop_row"}, "region": {"type": "category", "missing": "drop_row"},
                "plan": "auto"}
    splits = load(tmp_path, labelled_table(), label_column="churn", features=features)
    # age is missing in rows 1, 7, 13 and region in 3, 9, 15; no label in 0, 20, 30
    assert splits.report["rows_dropped"] == {"label": 3, "age": 3, "region": 3}
    assert sum(splits.sizes().values()) == 81
    assert all(not frame[["age", "region"]].isna().any().any() for frame in splits.raw.values())
    assert "region=missing" not in splits.feature_names


def test_fitted_statistics_are_those_of_the_train_split(tmp_path):
    splits = load(tmp_path, labelled_table(), label_column="churn",
                  features={"income": {"type": "numeric", "missing": "mean"}, "region": "category"})
    state = splits.features["columns"][0]["state"]
    assert state["fill"] == pytest.approx(splits.raw["train"]["income"].mean())
    assert state["fill"] != pytest.approx(pd.concat(splits.raw.values())["income"].mean())


def test_group_by_keeps_each_group_in_one_split(tmp_path):
    rng = np.random.default_rng(1)
    person = np.repeat(np.arange(30), 4)
    frame = pd.DataFrame({"person": [f"p{p:02d}" for p in person], "visit": person * 100 + np.tile(np.arange(4), 30),
                          "weight": rng.normal(70, 8, person.size), "y": rng.choice(["a", "b"], person.size)})
    splits = load(tmp_path, frame, label_column="y", features={"visit": "numeric", "weight": "numeric"},
                  split={"group_by": "person", "validation": 0.2, "test": 0.2})
    assert splits.report["group_by"] == "person" and "person" not in splits.raw["train"].columns
    seen = {name: set(split["visit"] // 100) for name, split in splits.raw.items()}
    assert all(seen.values())
    assert seen["train"].isdisjoint(seen["validation"]) and seen["train"].isdisjoint(seen["test"])
    assert seen["validation"].isdisjoint(seen["test"])
    assert set().union(*seen.values()) == set(range(30))


def test_standardize_rescales_number_columns_and_leaves_one_hot_columns(tmp_path):
    from tasks.data.preprocess.standardize import StandardizeConfig
    from tasks.data.scaling import fit_preprocess

    splits = load(tmp_path, labelled_table(), label_column="churn",
                  features={"age": "numeric", "region": "category", "member": "binary",
                            "income": {"type": "numeric", "missing": "mean", "indicator": True}})
    scaled, scaling = fit_preprocess([StandardizeConfig()], splits, "none")
    names = splits.feature_names
    fixed = [i for i, n in enumerate(names) if "=" in n or n in ("member", "income_missing")]
    assert len(fixed) == 8
    for split in ("train", "test"):
        np.testing.assert_array_equal(scaled.X[split][:, fixed], splits.X[split][:, fixed])
    for i in (names.index("age"), names.index("income")):
        assert scaled.X["train"][:, i].mean() == pytest.approx(0.0, abs=1e-5)
        assert scaled.X["train"][:, i].std() == pytest.approx(1.0, abs=1e-3)
    assert [scaling.feature_mean[i] for i in fixed] == [0.0] * 8 and [scaling.feature_scale[i] for i in fixed] == [1.0] * 8


# --- the embedding front end and the raw-row predictor -----------------------------------------------------------

EMBEDDED_FEATURES = {"age": "numeric", "region": {"type": "category", "encoding": "embedding"},
                     "plan": "auto", "signup": "auto",
                     "device": {"type": "category", "encoding": "embedding", "missing": "most_frequent"}}


def embedded_splits(tmp_path):
    frame = labelled_table()
    frame["device"] = np.random.default_rng(2).choice(["ios", "android", "web", None], len(frame))
    return load(tmp_path, frame, label_column="churn", features=EMBEDDED_FEATURES)


def test_embedded_network_forward_pass_has_the_right_shape(tmp_path):
    import torch

    from tasks.train.embedded import build_network

    splits = embedded_splits(tmp_path)
    embeddings = splits.layout["embeddings"]
    assert [e["column"] for e in embeddings] == [splits.feature_names.index("region"),
                                                 splits.feature_names.index("device")]
    assert [(e["cardinality"], e["dim"]) for e in embeddings] == [(6, embedding_dim(6)), (4, embedding_dim(4))]
    widths = []

    def build(i, o):
        widths.append((i, o))
        return torch.nn.Linear(i, o)

    network = build_network(build, splits.num_features, 2, embeddings)
    assert widths == [(splits.num_features - 2 + embedding_dim(6) + embedding_dim(4), 2)]
    batch = torch.from_numpy(splits.X["train"][:16].copy())
    batch[0, embeddings[0]["column"]] = 99.0  # a code past the table is clamped, not an index error
    assert network(batch).shape == (16, 2)
    assert isinstance(build_network(build, 5, 3), torch.nn.Linear) and widths[-1] == (5, 3)  # no codes: core as is


def predictor(tmp_path):
    from tasks.export.tabular_pyfunc import TabularPredictor
    from tasks.export.torch_model import model_spec
    from tasks.registry import MODELS
    from tasks.data.preprocess.standardize import StandardizeConfig
    from tasks.data.scaling import fit_preprocess
    from tasks.train.common import seeded_init
    from tasks.train.embedded import build_network

    splits = embedded_splits(tmp_path)
    scaled, scaling = fit_preprocess([StandardizeConfig()], splits, "none")
    config = MODELS.get("mlp").model_validate({"type": "mlp", "hidden": [8]})
    with seeded_init(0):
        network = build_network(config.build, splits.num_features, 2, splits.layout["embeddings"])
    spec = json.loads(json.dumps(model_spec(config, scaled, scaling), default=str))
    return TabularPredictor(network, spec), splits, scaled


def test_predictor_takes_raw_rows_with_extra_and_reordered_columns(tmp_path):
    model, splits, scaled = predictor(tmp_path)
    rows = splits.raw["test"]
    np.testing.assert_allclose(model.inputs.matrix(rows), scaled.X["test"], rtol=1e-4, atol=1e-3)
    expected = model.predict_frame(rows)
    assert list(expected.columns) == ["label", "proba_no", "proba_yes"]
    np.testing.assert_allclose(expected[["proba_no", "proba_yes"]].sum(axis=1), 1.0)
    messy = rows[rows.columns[::-1]].assign(note="free text", **{"Unnamed: 0": np.arange(len(rows))})
    pd.testing.assert_frame_equal(model.predict_frame(messy), expected)


def test_predictor_takes_an_omitted_optional_column_as_missing_and_refuses_an_array(tmp_path):
    model, splits, _ = predictor(tmp_path)
    rows = splits.raw["test"]
    assert all(i["nullable"] for i in model.spec["features"]["inputs"])  # every column had missing cells
    omitted = model.predict_frame(rows.drop(columns=["device"]))
    pd.testing.assert_frame_equal(omitted, model.predict_frame(rows.assign(device=None)))
    with pytest.raises(ValueError, match="pass a DataFrame"):
        model.inputs.matrix(np.zeros((2, 5)))
