"""Integration: a messy table (an index column, strings, booleans, NaN in number and string columns, a missing label)
trains through Prefect into MLflow; the run holds the feature table and the strategies; the logged model takes raw
rows as `pd.read_csv` gives them (NaN and never-seen categories included) and returns labels and probabilities."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from tests.support.helpers import runs_of, tracking_uri_env, write_pipelines

PIPELINE = """\
pipelines:
  shop:
    seed: 5
    data:
      source: csv
      path: shop.csv
      label_column: segment
      feature_defaults: {numeric: {missing: mean}}
      features:
        spend: auto
        visits: {type: numeric, missing: median, indicator: true}
        region: category
        device: {type: category, encoding: embedding, missing: most_frequent}
        member: auto
        note: drop
    preprocess: [standardize]
    model: {type: mlp, hidden: [32]}
    train: {backend: torch, epochs: 25, batch_size: 16, optimizer: {name: adam, lr: 0.01}}
"""


def shop_table(n: int = 360, seed: int = 0) -> pd.DataFrame:
    """Three customer segments told apart by spend, region and membership; NaN cells in every feature kind."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(["budget", "regular", "premium"], n)
    spend = np.select([segment == "budget", segment == "regular"], [20.0, 60.0], 120.0) + rng.normal(0, 8, n)
    region = np.where(segment == "premium", "north", rng.choice(["south", "east", "west"], n)).astype(object)
    frame = pd.DataFrame({
        "segment": segment.astype(object), "spend": spend, "visits": rng.integers(1, 30, n).astype(float),
        "region": region, "device": rng.choice(["ios", "android", "web"], n).astype(object),
        "member": segment != "budget", "note": [f"free text {i}" for i in range(n)]})
    frame.loc[rng.choice(n, 20, replace=False), "visits"] = np.nan
    frame.loc[rng.choice(n, 15, replace=False), "spend"] = np.nan
    frame.loc[rng.choice(n, 25, replace=False), "region"] = None
    frame.loc[rng.choice(n, 10, replace=False), "device"] = None
    frame.loc[[3, 7, 11], "segment"] = None  # three rows with no label: dropped and counted
    return frame


@pytest.fixture(scope="module")
def shop(tmp_path_factory, prefect_harness):
    from flows.pipeline import run_pipeline

    folder = tmp_path_factory.mktemp("shop")
    shop_table().to_csv(folder / "shop.csv")  # with pandas' unnamed index column, as R and pandas write tables
    write_pipelines(folder, PIPELINE)
    with tracking_uri_env(folder) as uri:
        summary = run_pipeline("shop", None, str(folder / "pipelines.yaml"))
        yield folder, uri, summary


def test_the_run_finishes_and_holds_the_feature_table_and_strategies(shop):
    from mlflow import MlflowClient

    folder, uri, summary = shop
    client = MlflowClient(uri)
    run = client.get_run(summary.run_id)
    assert run.info.status == "FINISHED"
    assert summary.metrics["test_accuracy"] > 0.8
    params = run.data.params
    assert params["feature.visits"].startswith("numeric: missing: median") and "indicator" in params["feature.visits"]
    assert params["feature.spend"].startswith("numeric: missing: mean")  # feature_defaults applied to an auto column
    assert params["feature.region"].startswith("category: missing: own bucket; one-hot of 4 values")
    assert "embedding dim" in params["feature.device"] and "most frequent" in params["feature.device"]
    assert params["feature.member"].startswith("binary")
    assert params["feature.note"] == "drop: dropped"
    assert params["data.rows_dropped.label"] == "3"
    local = client.download_artifacts(summary.run_id, "features/feature_table.json")
    table = json.loads(open(local, encoding="utf-8").read())
    rows = {r[0]: dict(zip(table["columns"], r)) for r in table["data"]}
    assert set(rows) == {"spend", "visits", "region", "device", "member", "note"}
    assert rows["region"]["missing_pct"] == pytest.approx(100 * 25 / 360, abs=0.01)
    assert rows["region"]["distinct"] == 4 and rows["region"]["source"] == "declared"
    assert rows["spend"]["source"] == "inferred: numbers" and rows["member"]["source"] == "inferred: booleans"


def test_the_feature_table_is_a_prefect_artifact_of_the_flow_run(shop):
    import asyncio

    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    folder, uri, summary = shop
    flow_run_id = MlflowClient(uri).get_run(summary.run_id).data.tags["prefect.flow_run_id"]

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["feature-table"])),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))

    artifacts = asyncio.run(read())
    assert len(artifacts) == 1 and artifacts[0].type == "table"
    rows = json.loads(artifacts[0].data) if isinstance(artifacts[0].data, str) else artifacts[0].data
    assert [row["column"] for row in rows] == ["spend", "visits", "region", "device", "member", "note"]


def test_the_model_predicts_raw_csv_rows_with_nan_and_unseen_categories(shop):
    import mlflow

    folder, uri, summary = shop
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(summary.model_uri)
    fresh = shop_table(n=200, seed=1).dropna(subset=["segment"])
    fresh.loc[fresh.index[:10], "region"] = "atlantis"  # never seen in training: the `other` bucket, no crash
    text = fresh.to_csv()  # the unnamed index column and the label ride along and are ignored
    frame = pd.read_csv(io.StringIO(text))
    assert frame["spend"].isna().any() and frame["region"].isna().any()
    out = model.predict(frame)
    assert list(out.columns) == ["label", "proba_budget", "proba_premium", "proba_regular"]
    assert len(out) == len(frame) and not out.isna().any().any()
    assert np.allclose(out[["proba_budget", "proba_premium", "proba_regular"]].sum(axis=1), 1.0)
    assert set(out["label"]) <= {"budget", "regular", "premium"}
    assert (out["label"].to_numpy() == frame["segment"].to_numpy()).mean() > 0.8
    best = out[["proba_budget", "proba_premium", "proba_regular"]].to_numpy().argmax(1)
    assert (np.array(["budget", "premium", "regular"])[best] == out["label"].to_numpy()).all()


def test_the_signature_names_the_raw_columns_and_a_missing_one_is_a_clear_error(shop):
    import mlflow
    from mlflow.exceptions import MlflowException

    folder, uri, summary = shop
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(summary.model_uri)
    schema = model.metadata.get_input_schema()
    inputs = {spec.name: spec for spec in schema.inputs}
    assert list(inputs) == ["spend", "visits", "region", "device", "member"]  # `note` is dropped: not an input
    assert {n: inputs[n].type.name for n in inputs} == {"spend": "double", "visits": "double", "region": "string",
                                                        "device": "string", "member": "boolean"}
    assert {n for n, s in inputs.items() if not s.required} == {"spend", "visits", "region", "device"}
    example = model.metadata.load_input_example(mlflow.artifacts.download_artifacts(summary.model_uri))
    assert set(example.columns) >= set(inputs)  # the input example is raw rows
    rows = pd.read_csv(folder / "shop.csv").head(4).drop(columns=["member"])
    with pytest.raises(MlflowException, match=r"missing inputs \['member'\]"):
        model.predict(rows)


def test_fuseflow_predict_prints_labels_and_probabilities_for_raw_rows(shop, capsys, tmp_path):
    from flows.cli import main

    folder, uri, summary = shop
    rows = tmp_path / "rows.csv"
    rows.write_text("spend,visits,region,device,member\n118.5,,north,ios,true\n21,3,,web,false\n"
                    "60,12,atlantis,,true\n", encoding="utf-8")
    assert main(["predict", summary.model_uri, str(rows), "--tracking-uri", uri]) == 0
    labels = capsys.readouterr().out.split()
    assert labels[0] == "premium" and labels[1] == "budget" and len(labels) == 3
    assert main(["predict", summary.model_uri, str(rows), "--tracking-uri", uri, "--proba"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t") == ["label", "proba_budget", "proba_premium", "proba_regular"]
    assert all(abs(sum(map(float, line.split("\t")[1:])) - 1) < 1e-4 for line in lines[1:])
    bad = tmp_path / "bad.csv"
    bad.write_text("spend,visits,region,device,member\nlots,3,north,ios,true\n", encoding="utf-8")
    assert main(["predict", summary.model_uri, str(bad), "--tracking-uri", uri]) == 2
    assert "row 1, column 'spend': 'lots' is not a number" in capsys.readouterr().err


def test_bad_tables_exit_2_with_one_line_per_problem_and_no_run(tmp_path, capsys):
    from flows.cli import main

    table = shop_table(n=60)
    table["customer"] = [f"c{i}" for i in range(60)]
    table.to_csv(tmp_path / "shop.csv", index=False)
    pd.DataFrame({"x": [1.0, 2.0] * 10, "y": [None] * 20}).to_csv(tmp_path / "empty.csv", index=False)
    cases = {
        "high-cardinality": ("data: {source: csv, path: shop.csv, label_column: segment}",
                             "column 'customer' holds 60 distinct strings"),
        "label-all-missing": ("data: {source: csv, path: empty.csv, label_column: y}",
                              "label column 'y' has no values"),
        "unknown-column": ("data: {source: csv, path: shop.csv, label_column: segment, features: {spned: numeric}}",
                           "unknown column 'spned'; did you mean 'spend'?"),
        "unknown-type": ("data: {source: csv, path: shop.csv, label_column: segment, features: {spend: colour}}",
                         "colour"),
        "strategy-type": ("data: {source: csv, path: shop.csv, label_column: segment, "
                          "features: {region: {type: category, missing: mean}}}", "missing"),
    }
    for name, (data, fragment) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        for csv in ("shop.csv", "empty.csv"):
            (folder / csv).write_bytes((tmp_path / csv).read_bytes())
        write_pipelines(folder, f"pipelines:\n  p:\n    {data}\n    model: {{type: mlp}}\n"
                                "    train: {backend: torch, epochs: 1}\n")
        code = main(["validate", "--file", str(folder / "pipelines.yaml")])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        assert fragment in err, (name, err)
        lines = err.strip().splitlines()  # one located line per problem (the file and line), no traceback
        assert lines and all(line.startswith("error: ") and "pipelines.yaml:" in line for line in lines), (name, lines)
        assert len(lines) == (2 if name == "high-cardinality" else 1), (name, lines)  # `note` and `customer`
        assert runs_of(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}") == []
