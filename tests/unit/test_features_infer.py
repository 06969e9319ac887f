"""Unit: a table column's feature type, inferred from its values or declared in `features` / `feature_defaults`,
the errors a bad `features` section gives (through the same `resolve` the CLI uses), and the feature table.

Encodings, the load path and the predictor: tests/unit/test_features.py."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tasks.registry import load_components

load_components()  # every registry complete before a config schema is first built (as `resolve` does)

from tasks.data.features.fitted import FittedFeatures, plan_columns  # noqa: E402
from tasks.data.features.infer import HighCardinality, infer_type  # noqa: E402
from tasks.data.features.spec import TableColumns  # noqa: E402
from tasks.errors import ConfigError  # noqa: E402

N = 30
RNG = np.random.default_rng(0)
DATES = [str(d.date()) for d in pd.date_range("2021-01-01", periods=N, freq="9D")]


def column(name: str, values) -> pd.Series:
    return pd.Series(values, name=name)


def with_none(values: list, *rows: int) -> list:
    values = list(values)
    for row in rows:
        values[row] = None
    return values


INFER_CASES = [
    # (case id, column, position in the table, type, a fragment of the reason)
    ("float-with-nan", column("income", with_none(RNG.normal(5e4, 1e4, N), 2, 5)), 1, "numeric", "numbers"),
    ("repeated-ints", column("visits", RNG.integers(0, 5, N)), 1, "numeric", "numbers"),
    ("few-strings", column("region", with_none(RNG.choice(["north", "south", "east"], N), 0, 9)), 1, "category",
     "3 distinct values"),
    ("two-strings", column("plan", with_none(["basic", "pro"] * (N // 2), 3)), 1, "binary", "two distinct values"),
    ("bool-dtype", column("member", RNG.random(N) > 0.5), 1, "binary", "booleans"),
    ("bools-with-none", column("member", with_none([True, False] * (N // 2), 4)), 1, "binary", "two distinct"),
    ("iso-date-strings", column("signup", with_none(DATES, 1, 7)), 1, "datetime", "dates"),
    ("us-date-strings", column("signup", [f"{m}/{d}/2022" for m, d in zip(RNG.integers(1, 13, N),
                                                                         RNG.integers(1, 29, N))]), 1, "datetime", "dates"),
    ("datetime64", column("signup", pd.to_datetime(with_none(DATES, 2))), 1, "datetime", "dates"),
    ("pandas-index", column("Unnamed: 0", np.arange(N)), 0, "drop", "a row index written by pandas"),
    ("pandas-index-not-first", column("Unnamed: 0", RNG.integers(0, 9, N)), 3, "numeric", "numbers"),
    ("shuffled-id", column("customer_id", RNG.permutation(np.arange(7000, 7000 + N))), 1, "drop", "a row id"),
    ("monotonic-ints", column("ticket", np.arange(100, 100 + N)), 2, "drop", "a row id"),
    ("unique-ints-not-an-id", column("score", RNG.permutation(np.arange(N))), 2, "numeric", "numbers"),
    ("id-of-a-tiny-table", column("customer_id", np.arange(10)), 1, "numeric", "numbers"),
    ("60-strings-in-200-rows", column("city", [f"city{i % 60}" for i in range(200)]), 1, "category",
     "60 distinct values"),
]


@pytest.mark.parametrize("values,position,expected,reason", [c[1:] for c in INFER_CASES],
                         ids=[c[0] for c in INFER_CASES])
def test_infer_type(values, position, expected, reason):
    inferred = infer_type(values, position)
    assert inferred.type == expected
    assert reason in inferred.reason


@pytest.mark.parametrize("values,expected", [
    (["yes", "no", " "] * 10, "binary"),
    (with_none(DATES, 3)[:-1] + [" "], "datetime"),
], ids=["yes-no-with-blanks", "dates-with-a-blank"])
def test_blank_cells_are_missing_for_inference_too(values, expected):
    assert infer_type(column("c", values), 1).type == expected


def test_high_cardinality_strings_are_refused_with_the_fix():
    emails = column("email", [f"user{i}@mail.example" for i in range(N)] + [None])
    with pytest.raises(HighCardinality) as info:
        infer_type(emails, 1)
    message = str(info.value)
    assert f"column 'email' holds {N} distinct strings in {N} rows: too many for a category" in message
    assert "give it a type in `features`: `email: drop`" in message and "max_categories: 50" in message


def test_high_cardinality_fix_is_valid_yaml():
    import yaml

    with pytest.raises(HighCardinality) as info:
        infer_type(column("email", [f"user{i}@mail.example" for i in range(N)]), 1)
    fix = str(info.value).split("`")[-2]  # the last `...` span: the category suggestion
    assert fix == "email: {type: category, max_categories: 50}"
    assert yaml.safe_load(fix) == {"email": {"type": "category", "max_categories": 50}}


@pytest.mark.parametrize("features,key", [(None, ("features",)), (["email", "age"], ("features",)),
                                          ({"email": "auto", "age": "numeric"}, ("features", "email"))])
def test_plan_columns_reports_high_cardinality_at_the_features_key(features, key):
    frame = pd.DataFrame({"email": [f"u{i}@x.example" for i in range(N)], "age": RNG.normal(40, 9, N)})
    columns = TableColumns.model_validate({"label_column": "y", "features": features})
    plans, issues = plan_columns(frame, columns)
    assert [p.name for p in plans] == ["age"]  # the other columns are still typed
    assert len(issues) == 1 and issues[0][0] == key and "column 'email' holds" in issues[0][1]


# --- `features` and `feature_defaults` ---------------------------------------------------------------------------

def test_features_mapping_forms_and_defaults():
    columns = TableColumns.model_validate({
        "label_column": "y",
        "feature_defaults": {"numeric": {"missing": "mean", "scaling": "minmax"}, "category": {"max_categories": 3}},
        "features": {"age": "auto", "income": "numeric", "visits": {"type": "numeric", "missing": "median"},
                     "region": {"category": {"missing": "most_frequent"}}, "note": "drop"}})
    assert columns.feature_columns() == ["age", "income", "visits", "region", "note"]
    assert columns.declared_type("age") is None  # `auto`: inferred
    income, visits, region = (columns.declared_type(c) for c in ("income", "visits", "region"))
    assert (income.type, income.missing, income.scaling) == ("numeric", "mean", "minmax")
    assert (visits.missing, visits.scaling) == ("median", "minmax")  # its own option wins, the rest from defaults
    assert (region.type, region.missing, region.max_categories) == ("category", "most_frequent", 3)
    inferred = columns.typed_for("numeric")  # an inferred column gets the defaults too
    assert (inferred.missing, inferred.scaling) == ("mean", "minmax")
    assert columns.declared_type("note").type == "drop"


def test_a_column_may_override_the_default_constant_fill():
    columns = TableColumns.model_validate({
        "label_column": "y", "feature_defaults": {"numeric": {"missing": "constant", "fill_value": 0}},
        "features": {"age": {"type": "numeric", "missing": "median"}, "income": "numeric"}})
    assert columns.declared_type("income").fill_value == 0
    assert columns.declared_type("age").missing == "median"


PIPELINE = {"model": {"type": "mlp", "hidden": [8]}, "train": {"backend": "torch", "epochs": 1}}


def resolve_data(tmp_path, **data):
    """Resolve a one-pipeline project over a messy csv (as the CLI does); the resolved spec."""
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve

    n = 40
    rng = np.random.default_rng(3)
    pd.DataFrame({"age": with_none(rng.normal(40, 9, n), 2), "region": rng.choice(["north", "south", "east"], n),
                  "email": [f"user{i}@mail.example" for i in range(n)], "churn": rng.choice(["yes", "no"], n),
                  }).to_csv(tmp_path / "shop.csv")
    body = {**PIPELINE, "data": {"source": "csv", "path": "shop.csv", "label_column": "churn", **data}}
    (tmp_path / "pipelines.yaml").write_text("pipelines:\n  shop: " + json.dumps(body) + "\n", encoding="utf-8")
    return resolve(load_project(tmp_path / "pipelines.yaml"), "shop").spec


def test_a_good_features_section_resolves(tmp_path):
    spec = resolve_data(tmp_path, features={"age": {"type": "numeric", "indicator": True}, "region": "auto"},
                        feature_defaults={"numeric": {"missing": "mean"}})
    age = spec.data.declared_type("age")
    assert (age.missing, age.indicator) == ("mean", True)


SPEC_ERRORS = [
    ("unknown-type", {"features": {"age": "numeric", "region": {"type": "categry"}}},
     ["data.features.region", "unknown feature type 'categry'; did you mean 'category'", "expected one of: "]),
    ("unknown-type-shorthand", {"features": {"age": "numerc"}},
     ["data.features.age", "unknown feature type 'numerc'; did you mean 'numeric'"]),
    ("unknown-default-type", {"feature_defaults": {"catgory": {"max_categories": 5}}},
     ["data.feature_defaults", "unknown feature type 'catgory'; did you mean 'category'"]),
    ("unknown-option-key", {"features": {"region": {"type": "category", "max_categoris": 5}}},
     ["data.features.region", "unknown key 'max_categoris'; did you mean 'max_categories'", "min_frequency"]),
    ("bad-option-value", {"features": {"age": {"type": "numeric", "missing": "avg"}}},
     ["data.features.age.missing", "got 'avg'", "'mean'", "'median'"]),
    ("label-in-feature-list", {"features": ["age", "churn"]},
     ["`features` lists the label column 'churn'", "remove it from `features`"]),
    ("label-in-feature-mapping", {"features": {"age": "numeric", "churn": "category"}},
     ["`features` lists the label column 'churn'"]),
    ("column-not-in-table", {"features": ["age", "regoin"]},
     ["data.features[1]", "unknown column 'regoin'; did you mean 'region'?", "(columns: Unnamed: 0, age, region"]),
    ("mapped-column-not-in-table", {"features": {"agee": "numeric"}},
     ["data.features.agee", "unknown column 'agee'; did you mean 'age'?"]),
    ("empty-feature-list", {"features": []}, ["`features` is empty"]),
    ("high-cardinality-column", {"features": {"age": "auto", "email": "auto"}},
     ["data.features.email", "column 'email' holds 40 distinct strings in 40 rows", "`email: drop`"]),
]


@pytest.mark.parametrize("data,fragments", [c[1:] for c in SPEC_ERRORS], ids=[c[0] for c in SPEC_ERRORS])
def test_bad_features_section_names_the_key_and_the_fix(tmp_path, data, fragments):
    with pytest.raises(ConfigError) as info:
        resolve_data(tmp_path, **data)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert "pipelines.yaml" in message


# --- the feature table ---------------------------------------------------------------------------------------------

def test_feature_table_and_params():
    from tasks.data.features.report import feature_params, render_table

    frame = pd.DataFrame({"Unnamed: 0": np.arange(N), "price ($)": with_none(RNG.normal(9, 2, N), 0, 1, 2),
                          "color": with_none(RNG.choice(["red", "blue"], N).tolist(), 5),
                          "size": RNG.choice(["s", "m", "l"], N)})
    plans, issues = plan_columns(frame)
    fitted = FittedFeatures.fit(plans, frame, frame)
    rows = {row["column"]: row for row in fitted.table(frame)}
    assert rows["Unnamed: 0"]["type"] == "drop" and rows["Unnamed: 0"]["strategy"] == "dropped"
    assert rows["price ($)"]["missing_pct"] == 10.0 and rows["price ($)"]["source"] == "inferred: numbers"
    assert rows["price ($)"]["strategy"].startswith("missing: median")
    assert (rows["color"]["type"], rows["color"]["distinct"]) == ("binary", 2)
    assert rows["size"]["strategy"] == "missing: own bucket; one-hot of 3 values"
    params = feature_params({"feature_table": list(rows.values()), "rows_dropped": {"label": 2}, "group_by": "shop"})
    assert params["feature.price ___"].startswith("numeric: missing: median")
    assert params["data.rows_dropped.label"] == "2" and params["data.split.grouped_by"] == "shop"
    table = render_table("shop", list(rows.values()), {"label": 2})
    assert table.row_count == 4 and "2 (label missing)" in table.caption
