"""End to end: models fuseflow logs are served by `mlflow models serve -m <uri> --env-manager local` on a free
loopback port and called over REST (`POST /invocations`) as users call them.

One module fixture trains once per model kind (a tiny fresh BERT on a ham/spam CSV with an offline WordPiece
tokenizer, a tabular MLP on a small messy CSV with a string category column and a numeric column with NaN cells, a
fusion of two tiny members of that pipeline) into a sqlite MLflow store in a temporary folder, and starts one server
per model as soon as that model is logged (its start-up overlaps the next training). Each server runs in its own
process group and all are stopped by PID in the fixture's finalizer, so none outlives a failing test. Requests go to
127.0.0.1 only (proxies from the environment are not used); the servers run offline (local env manager: nothing is
installed; the Hub client offline)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.servers import START_TIMEOUT, base_env, free_port, start, stop_group, wait_for
from tests.support.text_helpers import spam_project, text_pipelines

pytestmark = pytest.mark.e2e

CLASSES = ["bronze", "gold", "silver"]

TABULAR = """\
  tiers:
    seed: 4
    data:
      source: csv
      path: tiers.csv
      label_column: tier
    preprocess: [standardize]
    model: {type: mlp, hidden: [16]}
    train: {backend: torch, epochs: 8, batch_size: 16, optimizer: {name: adam, lr: 0.02}}
    evaluate: {confusion_matrix: false, learning_curve: false}
  tiers-fusion:
    fusion:
      members:
        - pipeline: tiers
          set: {seed: 1}
        - pipeline: tiers
          set: {seed: 2, model.hidden: [8]}
      method: weighted
      require_gain: false
      bootstrap: {samples: 100}
    evaluate: {metrics: [accuracy]}
"""

#: rows as users send them: a never-seen category, a null in the nullable number column, an extra column
ROWS = [
    {"city": "oslo", "amount": 131.0, "comment": "vip"},
    {"city": "lima", "amount": None, "comment": "no amount"},
    {"city": "pune", "amount": 18.5, "comment": ""},
    {"city": "oslo", "amount": 64.0, "comment": "x"},
    {"city": "atlantis", "amount": 70.0, "comment": "unseen city"},
]


def tiers_table(n: int = 150, seed: int = 0) -> pd.DataFrame:
    """Three tiers told apart by amount and city; NaN cells in `amount` (so it is optional in the signature)."""
    rng = np.random.default_rng(seed)
    tier = rng.choice(["bronze", "silver", "gold"], n)
    amount = np.select([tier == "bronze", tier == "silver"], [20.0, 65.0], 130.0) + rng.normal(0, 6, n)
    city = np.where(tier == "gold", "oslo", rng.choice(["lima", "pune"], n)).astype(object)
    frame = pd.DataFrame({"city": city, "amount": amount, "tier": tier.astype(object)})
    frame.loc[rng.choice(n, 12, replace=False), "amount"] = np.nan
    return frame


def mlflow_cli() -> list[str]:
    script = Path(sys.executable).parent / "mlflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlflow"]


class ModelServer:
    """`mlflow models serve -m <uri> --env-manager local` on a free loopback port, in its own process group."""

    def __init__(self, name: str, model_uri: str, tracking_uri: str, folder: Path) -> None:
        self.name, self.model_uri = name, model_uri
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"serve-{name}.log"
        env = base_env(folder / "serve-prefect-home")
        for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            env.pop(key, None)
        # the scoring server is `bash -c "exec uvicorn ..."`: the venv's bin first, as in an activated venv
        env.update({"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_MODELS_WORKERS": "1",
                    "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
                    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
        self.proc = start([*mlflow_cli(), "models", "serve", "-m", model_uri, "--env-manager", "local",
                           "--host", "127.0.0.1", "--port", str(self.port)], env, self.log, cwd=folder)
        self.ready = False

    def wait(self, http) -> "ModelServer":
        if not self.ready:
            wait_for(lambda: http.get(f"{self.url}/ping", timeout=5).status_code == 200, START_TIMEOUT,
                     f"`mlflow models serve` of the {self.name} model", self.proc, self.log)
            self.ready = True
        return self

    def invoke(self, http, payload: dict):
        return http.post(f"{self.url}/invocations", data=json.dumps(payload),
                         headers={"Content-Type": "application/json"}, timeout=60)

    def stop(self) -> None:
        stop_group(self.proc, grace=10)


@pytest.fixture(scope="module")
def http():
    """A client that talks to loopback directly (no proxy from the environment)."""
    import requests

    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prefect_harness):
    """Each model kind trained once into one sqlite store, and its server started: model URIs and servers by kind
    ('text', 'tabular', 'fused'), the store, the folder. The servers are stopped by PID when the module ends."""
    import mlflow

    from flows.pipeline import run_pipeline

    folder = tmp_path_factory.mktemp("serving")
    tiers_table().to_csv(folder / "tiers.csv", index=False)
    spam_project(folder)
    text = text_pipelines(folder / "spam.csv", folder / "tokenizer", "torch", 2, name="spam-tiny")
    path = folder / "pipelines.yaml"
    text += "    evaluate: {confusion_matrix: false, learning_curve: false}\n"  # spam-tiny's last section
    path.write_text(text + TABULAR, encoding="utf-8")
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)  # the global and the env var (a stale global from another module would win)
    servers: dict[str, ModelServer] = {}
    uris: dict[str, str] = {}
    try:  # each server starts as soon as its model is logged: its start-up overlaps the next training
        for kind, name in (("text", "spam-tiny"), ("tabular", "tiers"), ("fused", "tiers-fusion")):
            uris[kind] = run_pipeline(name, None, str(path)).model_uri
            servers[kind] = ModelServer(kind, uris[kind], uri, folder)
        yield {"uris": uris, "tracking_uri": uri, "folder": folder, "servers": servers}
    finally:
        for server in servers.values():
            server.stop()
        mlflow.set_tracking_uri(old)  # None clears the global and the env var


@pytest.fixture(scope="module")
def servers(trained):
    """One `mlflow models serve` per model kind (waited for by the tests that call it)."""
    return trained["servers"]


def local_model(trained, kind: str):
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(trained["uris"][kind])


def predictions(response) -> list[dict]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"predictions"}, body
    return body["predictions"]


def assert_same_as_local(served: list[dict], local: pd.DataFrame) -> None:
    assert len(served) == len(local)
    frame = pd.DataFrame(served)
    assert list(frame.columns) == list(local.columns)
    assert frame["label"].astype(str).tolist() == local["label"].astype(str).tolist()
    numbers = [c for c in local.columns if c != "label"]
    np.testing.assert_allclose(frame[numbers].to_numpy(float), local[numbers].to_numpy(float), rtol=0, atol=1e-9)


# --- tabular -------------------------------------------------------------------------------------------------------

def test_tabular_signature_is_the_raw_columns_with_amount_optional(trained):
    schema = local_model(trained, "tabular").metadata.get_input_schema()
    inputs = {spec.name: spec for spec in schema.inputs}
    assert list(inputs) == ["city", "amount"]
    assert {n: s.type.name for n, s in inputs.items()} == {"city": "string", "amount": "double"}
    assert inputs["city"].required and not inputs["amount"].required


def test_tabular_split_and_records_with_a_null_and_an_extra_column_match_local_predict(trained, servers, http):
    server = servers["tabular"].wait(http)
    columns = ["city", "amount", "comment"]
    split = predictions(server.invoke(http, {"dataframe_split": {
        "columns": columns, "data": [[row[c] for c in columns] for row in ROWS]}}))
    records = predictions(server.invoke(http, {"dataframe_records": ROWS}))
    assert len(split) == len(records) == len(ROWS)
    for row in split:
        assert set(row) == {"label", *(f"proba_{c}" for c in CLASSES)}
        assert row["label"] in CLASSES
        assert abs(sum(row[f"proba_{c}"] for c in CLASSES) - 1) < 1e-6
        assert row["label"] == max(CLASSES, key=lambda c: row[f"proba_{c}"])
    assert split == records
    local = local_model(trained, "tabular").predict(pd.DataFrame(ROWS))
    assert_same_as_local(split, local)
    assert split[0]["label"] == "gold" and split[2]["label"] == "bronze"  # the model learnt the easy rows


def test_tabular_one_row_whose_nullable_cell_is_null(trained, servers, http):
    """A single row with a null `amount`: the whole column is null (no number beside it to give it a float type)."""
    server = servers["tabular"].wait(http)
    row = {"city": "pune", "amount": None}
    served = predictions(server.invoke(http, {"dataframe_records": [row]}))
    local = local_model(trained, "tabular").predict(pd.DataFrame([row]).astype({"amount": float}))
    assert_same_as_local(served, local)


def test_tabular_missing_required_column_is_a_4xx_that_names_it(servers, http):
    server = servers["tabular"].wait(http)
    response = server.invoke(http, {"dataframe_split": {"columns": ["amount", "comment"],
                                                        "data": [[12.0, "a"], [80.0, "b"]]}})
    assert 400 <= response.status_code < 500, response.text
    message = response.json()["message"]
    assert "missing inputs ['city']" in message, message


@pytest.mark.parametrize("kind", ["tabular", "fused"])
def test_an_omitted_optional_column_is_predicted_as_missing_cells(trained, servers, http, kind):
    """The signature says `amount` is optional: a row without it is a row whose `amount` is missing."""
    server = servers[kind].wait(http)
    omitted = server.invoke(http, {"dataframe_records": [{"city": "oslo"}, {"city": "pune"}]})
    nulls = predictions(server.invoke(http, {"dataframe_records": [{"city": "oslo", "amount": None},
                                                                   {"city": "pune", "amount": None}]}))
    assert predictions(omitted) == nulls


# --- fused ---------------------------------------------------------------------------------------------------------

def test_fused_model_serves_a_label_per_row(trained, servers, http):
    server = servers["fused"].wait(http)
    served = predictions(server.invoke(http, {"dataframe_records": ROWS}))
    assert len(served) == len(ROWS) and all(row["label"] in CLASSES for row in served)
    assert_same_as_local(served, local_model(trained, "fused").predict(pd.DataFrame(ROWS)))
    split = predictions(server.invoke(http, {"dataframe_split": {"columns": ["amount", "city"],
                                                                 "data": [[131.0, "oslo"], [None, "lima"]]}}))
    assert [row["label"] for row in split] == [served[0]["label"], served[1]["label"]]


# --- text ----------------------------------------------------------------------------------------------------------

TEXTS = ["win free cash prize now", "see you at lunch tomorrow", "claim your bonus voucher", "dinner at home later"]


def test_text_model_serves_dataframe_records_of_the_text_column(trained, servers, http):
    server = servers["text"].wait(http)
    served = predictions(server.invoke(http, {"dataframe_records": [{"text": t} for t in TEXTS]}))
    assert len(served) == len(TEXTS)
    assert all(set(row) == {"label", "score"} and row["label"] in ("ham", "spam") and 0 < row["score"] <= 1
               for row in served)
    local = local_model(trained, "text").predict(TEXTS)
    assert [row["label"] for row in served] == local["label"].tolist()
    np.testing.assert_allclose([row["score"] for row in served], local["score"].to_numpy(float), atol=1e-6)
    plain = predictions(server.invoke(http, {"inputs": TEXTS}))
    assert [row["label"] for row in plain] == local["label"].tolist()
