"""Small builders shared by tests: tiny pipelines.yaml files and MLflow queries."""
from __future__ import annotations

import os
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TINY_IRIS = """\
defaults:
  seed: 7
pipelines:
  iris-tiny:
    description: tiny iris MLP for tests
    data: {source: sklearn, name: iris}
    preprocess:
      - standardize: {}
    model: {type: mlp, hidden: [16], activation: relu}
    train:
      backend: torch
      epochs: 4
      batch_size: 16
      optimizer: {name: adam, lr: 0.02}
"""


#: a pruned TPE search on iris over a wide learning-rate range (tiny rates lose, so some trials are pruned);
#: `format(epochs=..., trials=..., startup=...)`, then add a `runner:` or `max_concurrent` line as a test needs
IRIS_SEARCH = """\
pipelines:
  iris-search:
    seed: 7
    data: {{source: sklearn, name: iris}}
    preprocess: [{{standardize: {{}}}}]
    model: {{type: mlp, hidden: [16]}}
    train: {{backend: torch, epochs: {epochs}, batch_size: 16, optimizer: {{name: adam, lr: 0.02}}}}
    sweep:
      parameters:
        train.optimizer.lr: {{distribution: loguniform, low: 1.0e-6, high: 0.1}}
      sampler: {{tpe: {{n_startup_trials: {startup}}}}}
      pruner: {{median: {{startup_trials: 2, warmup_epochs: 1}}}}
      trials: {trials}
      metric: val_loss
"""


#: a one-layer model that sleeps per training batch, so a test can stop a run mid-training: write it as
#: `<module>.py` in the project and name `target: "<module>:build"` with `params: {delay: 0.05}`
SLOW_LINEAR_MODULE = """\
import time

import torch.nn as nn


class Slow(nn.Module):
    def __init__(self, in_features, out_features, delay):
        super().__init__()
        self.net = nn.Linear(in_features, out_features)
        self.delay = delay

    def forward(self, x):
        if self.training:
            time.sleep(self.delay)
        return self.net(x)


def build(in_features, out_features, delay=0.0):
    return Slow(in_features, out_features, delay)
"""


def write_iris_csv(path: Path, rows: slice = slice(None)) -> None:
    """scikit-learn's iris as a CSV with a `species` label column (`rows`: a slice of it, to change the data)."""
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.rename(columns={"target": "species"}).iloc[rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def write_pipelines(folder: Path, text: str = TINY_IRIS, name: str = "pipelines.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def runs_of(tracking_uri: str) -> list:
    """Every run in every experiment of the store (empty when the store does not exist)."""
    from mlflow import MlflowClient

    db = Path(tracking_uri.removeprefix("sqlite:///"))
    if tracking_uri.startswith("sqlite:///") and not db.exists():
        return []
    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


@contextmanager
def tracking_uri_env(folder: Path) -> Iterator[str]:
    """MLFLOW_TRACKING_URI pointed at a sqlite store in `folder` for a module-scoped fixture, then restored."""
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield uri
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old


def assert_config_error(code: int, output: str, fragments: list[str], tracking_uri: str) -> None:
    """A CLI run that stopped at a config error: exit 2, every fragment in its output, no traceback, no run."""
    assert code == 2, output
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    assert "Traceback" not in output
    assert runs_of(tracking_uri) == []


def iris_predictions(tracking_uri: str, model_uri: str) -> tuple:
    """A logged iris model's predictions for the 150 raw (unscaled) iris rows, flat, and the true labels."""
    import mlflow
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_iris

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(model_uri)
    iris = load_iris(as_frame=True)
    labels = model.predict(iris.data)["label"].tolist()
    return np.asarray([list(iris.target_names).index(v) for v in labels]), iris.target.to_numpy()


def cli_env(project_dir: Path, *paths: Path) -> dict[str, str]:
    """The environment of a `fuseflow` subprocess: this session's Prefect API, the project (and `paths`, e.g. a
    plugin's folder) on PYTHONPATH before the repository."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    env["PYTHONPATH"] = os.pathsep.join([str(project_dir), *map(str, paths), str(Path(__file__).resolve().parents[2])])
    return env
