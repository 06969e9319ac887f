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
