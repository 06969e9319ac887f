"""Scoring pipelines: a model trained, registered and promoted by fuseflow scores new rows (no label) through
`models:/NAME@champion`, in batches, into a file or a SQL table; the MLflow run records the version it used, the
row counts and the drift of the rows from the training data; bad outputs leave nothing half-written."""
from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from tests.support.helpers import runs_of, tracking_uri_env, write_pipelines

TRAIN = """\
pipelines:
  shop-train:
    seed: {seed}
    tracking: {{register: shop-clf, promote: {{metric: test_accuracy}}}}
    data:
      source: csv
      path: shop.csv
      label_column: segment
      features: {{customer: drop, spend: numeric, visits: numeric, region: category, member: auto}}
      feature_defaults: {{numeric: {{scaling: standardize}}}}
    model: {{type: mlp, hidden: [16]}}
    train: {{backend: torch, epochs: {epochs}, batch_size: 32, optimizer: {{name: adamw, lr: 0.01}}}}
"""

SCORE = """\
  shop-score:
    predict:
      model: {model}
      data: {{source: {source}, path: {path}}}
      output: {output}
      batch_size: 37
      outputs: [label, proba]
      keep_columns: [customer]
      drift: {{warn_above: 0.25}}
"""


def shop_rows(n: int, seed: int = 0, shifted: bool = False) -> pd.DataFrame:
    """Customers: spend and visits (some missing), a region, a membership flag; the segment follows spend."""
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 40.0, n) * (8 if shifted else 1)
    visits = rng.poisson(6, n).astype(float)
    visits[rng.random(n) < 0.1] = np.nan
    region = rng.choice(["north", "south", "east"] if not shifted else ["atlantis"], n)
    frame = pd.DataFrame({"customer": [f"c{seed}-{i}" for i in range(n)], "spend": spend.round(2), "visits": visits,
                          "region": region, "member": rng.random(n) > 0.5})
    frame["segment"] = np.where(spend > 100, "premium", np.where(spend > 50, "regular", "budget"))
    return frame


@pytest.fixture(scope="module")
def shop(prefect_harness, tmp_path_factory):
    """A project whose model `shop-clf` has two registered versions, @champion on version 1."""
    from mlflow import MlflowClient

    from flows.pipeline import run_pipeline

    folder = tmp_path_factory.mktemp("scoring")
    shop_rows(300).to_csv(folder / "shop.csv", index=False)
    shop_rows(205, seed=1).drop(columns=["segment"]).to_csv(folder / "new.csv", index=False)
    (folder / "scores").mkdir()
    with tracking_uri_env(folder) as uri:
        for seed in (1, 2):
            write_pipelines(folder, TRAIN.format(seed=seed, epochs=15))
            run_pipeline("shop-train", None, str(folder / "pipelines.yaml"))
        client = MlflowClient(uri)
        client.set_registered_model_alias("shop-clf", "champion", "1")
        yield folder, uri, client


def score(folder, source="csv", path="new.csv", output='{path: "scores/{run_id}.csv"}',
          model="models:/shop-clf@champion"):
    from flows.pipeline import run_pipeline

    text = TRAIN.format(seed=1, epochs=15) + SCORE.format(source=source, path=path, output=output, model=model)
    write_pipelines(folder, text)
    return run_pipeline("shop-score", None, str(folder / "pipelines.yaml"))


def test_scores_every_row_in_order_with_the_champion_and_records_the_version(shop):
    import mlflow

    folder, uri, client = shop
    summary = score(folder)
    run = client.get_run(summary.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["fuseflow.scoring.model_version"] == "1"
    assert run.data.tags["fuseflow.scoring.model_alias"] == "champion"
    assert run.data.params["scoring.model_pinned_uri"] == "models:/shop-clf/1"
    out = pd.read_csv(run.data.tags["fuseflow.scoring.output"])
    rows = pd.read_csv(folder / "new.csv")
    assert run.data.metrics["rows_scored"] == len(rows) == len(out) == 205  # six batches of 37
    assert list(out["customer"]) == list(rows["customer"])  # input order
    assert list(out.columns) == ["customer", "label", "proba_budget", "proba_premium", "proba_regular"]
    np.testing.assert_allclose(out.filter(like="proba_").sum(axis=1), 1, atol=1e-5)
    mlflow.set_tracking_uri(uri)
    expected = mlflow.pyfunc.load_model("models:/shop-clf/1").predict(rows)
    assert list(out["label"]) == list(expected["label"])
    shares = {k: v for k, v in run.data.metrics.items() if k.startswith("pred_share.")}
    assert sum(shares.values()) == pytest.approx(1) and run.data.tags["fuseflow.drift"] == "ok"
    assert "scored_accuracy" not in run.data.metrics  # no label column: no metrics against it


def test_a_new_champion_scores_the_next_run(shop):
    folder, uri, client = shop
    client.set_registered_model_alias("shop-clf", "champion", "2")
    try:
        run = client.get_run(score(folder).run_id)
        assert run.data.tags["fuseflow.scoring.model_version"] == "2"
    finally:
        client.set_registered_model_alias("shop-clf", "champion", "1")


def test_shifted_rows_are_flagged_as_drift_and_labelled_rows_give_metrics(shop):
    folder, uri, client = shop
    shop_rows(150, seed=3, shifted=True).to_csv(folder / "shifted.csv", index=False)
    run = client.get_run(score(folder, path="shifted.csv").run_id)
    assert run.data.tags["fuseflow.drift"] == "warn"
    assert run.data.metrics["drift_psi.spend"] > 0.25 and run.data.metrics["drift_psi.region"] > 0.25
    shop_rows(150, seed=4).to_csv(folder / "labelled.csv", index=False)
    run = client.get_run(score(folder, path="labelled.csv").run_id)
    assert run.data.tags["fuseflow.drift"] == "ok"
    assert run.data.metrics["drift_psi_max"] < 0.25
    # the scoring data has `segment`, but the predict section names no label column: scored only
    assert "scored_accuracy" not in run.data.metrics


def test_parquet_in_and_sqlite_out_append_then_replace(shop):
    folder, uri, client = shop
    pd.read_csv(folder / "new.csv").to_parquet(folder / "new.parquet")
    sql_out = "{url: sqlite:///scores.db, table: scores, mode: append}"
    for _ in range(2):
        score(folder, source="parquet", path="new.parquet", output=sql_out)
    with sqlite3.connect(folder / "scores.db") as db:
        assert db.execute("select count(*) from scores").fetchone()[0] == 410
    score(folder, source="parquet", path="new.parquet", output=sql_out.replace("append", "replace"))
    with sqlite3.connect(folder / "scores.db") as db:
        assert db.execute("select count(*) from scores").fetchone()[0] == 205


def test_bad_outputs_and_inputs_fail_clearly_and_leave_nothing_behind(shop):
    from flows.cli import main
    from tasks.errors import ConfigError

    folder, uri, client = shop
    with sqlite3.connect(folder / "other.db") as db:
        db.execute("create table scores (id integer, score real)")
        db.execute("insert into scores values (1, 0.5)")
    with pytest.raises(ConfigError, match=r"output table 'scores' has columns \['id', 'score'\]"):
        score(folder, output="{url: sqlite:///other.db, table: scores, mode: append}")
    with sqlite3.connect(folder / "other.db") as db:
        assert db.execute("select count(*) from scores").fetchone()[0] == 1  # untouched
    with pytest.raises(ConfigError, match=r"models:/shop-clf@gold does not resolve.*has no alias @gold"):
        score(folder, model="models:/shop-clf@gold")
    pd.read_csv(folder / "new.csv").drop(columns=["region"]).to_csv(folder / "noregion.csv", index=False)
    before = set((folder / "scores").iterdir())
    with pytest.raises(ConfigError, match=r"lack the model's input column\(s\) \['region'\]"):
        score(folder, path="noregion.csv")
    bad = pd.read_csv(folder / "new.csv")
    bad["spend"] = bad["spend"].astype(object)
    bad.loc[150, "spend"] = "lots"  # in the fifth batch: four were written to the partial file already
    bad.to_csv(folder / "bad.csv", index=False)
    with pytest.raises(ConfigError, match=r"row 151, column 'spend': 'lots' is not a number"):
        score(folder, path="bad.csv")
    assert set((folder / "scores").iterdir()) == before  # no file, whole or partial
    write_pipelines(folder, TRAIN.format(seed=1, epochs=15) + SCORE.format(
        source="csv", path="new.csv", output='{path: "missing/{date}.csv"}', model="models:/shop-clf@champion"))
    assert main(["validate", "--file", str(folder / "pipelines.yaml")]) == 2
