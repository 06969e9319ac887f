"""MLflow bookkeeping with an explicit run id (no thread-local "active run"), so it works from any task thread."""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000


def absolute_uri(uri: str) -> str:
    """`uri` with a relative sqlite path made absolute: the same store from any working folder or process."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + os.path.abspath(uri.removeprefix("sqlite:///"))
    return uri


def resolve_tracking_uri(configured: str | None = None) -> str:
    """MLFLOW_TRACKING_URI, else the YAML's `tracking.uri`, else the project's sqlite store (created on demand)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///"):
        db_path = Path(uri.removeprefix("sqlite:///"))
        db_path.parent.mkdir(parents=True, exist_ok=True)
    return uri


@lru_cache(maxsize=None)
def prepare_store(uri: str) -> None:
    """Create or migrate a sqlite store once per process, under an exclusive lock on `<db>.lock`, and switch it to
    WAL: concurrent `fuseflow run`s otherwise race to create the tables ("Online migration expected to match one
    row"). Writes then wait on each other (MLflow sets a 20 s busy timeout); readers never block them. Memoised:
    a store is prepared once per process."""
    if not uri.startswith("sqlite:///"):
        return
    import sqlite3

    from mlflow import MlflowClient

    from tasks.file_lock import exclusive

    db_path = Path(uri.removeprefix("sqlite:///"))
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(db_path.with_name(db_path.name + ".lock")):
        MlflowClient(uri).search_experiments(max_results=1)  # builds the store: creates/migrates the tables
        connection = sqlite3.connect(db_path, timeout=30)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()


def artifact_root_for(uri: str) -> str | None:
    """Artifacts of a sqlite store go beside the database (mlruns/artifacts), not into the working folder."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).resolve().parent.joinpath("artifacts").as_uri()
    return None


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested config -> dotted keys (`train.optimizer.lr`); lists of scalars stay one value, lists of maps index."""
    out: dict[str, str] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(data, list) and any(isinstance(v, (Mapping, list)) for v in data):
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = json.dumps(data) if isinstance(data, list) else ("" if data is None else str(data))
    return out


class RunLogger:
    """Logs to one MLflow run through `MlflowClient`: batched metrics/params, tags, artifacts."""

    def __init__(self, run_id: str, tracking_uri: str) -> None:
        from mlflow import MlflowClient

        from tasks.tracking.phases import PhaseTimer

        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.phases = PhaseTimer()  # tracked_run replaces it with the timer it started before opening the run

    def phase(self, name: str) -> Any:
        """Context manager timing the block as phase `name` of this run (tasks/tracking/phases.py)."""
        return self.phases.phase(name)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, model_id: str | None = None,
                    dataset: Any = None) -> None:
        """Metrics at `step` (default 0) in batches; with `model_id` (and `dataset`: anything with `name` and
        `digest`, e.g. an `mlflow.data` dataset) they are also recorded on that LoggedModel, for that dataset."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        name, digest = (dataset.name, dataset.digest) if dataset is not None else (None, None)
        batch = [Metric(k, float(v), now, step or 0, model_id=model_id, dataset_name=name, dataset_digest=digest,
                        run_id=self.run_id if model_id else None) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[i:i + 1000])

    def log_history(self, history: Iterable[Mapping[str, float]]) -> None:
        """Per-epoch rows (`{"epoch": n, metric: value, ...}`) in as few batches as MLflow allows."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for step, row in iter_metric_rows(history) for k, v in row.items()]
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[i:i + 1000])

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + MAX_PARAMS_PER_BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items() if v is not None])

    def append_note(self, markdown: str) -> None:
        """Add a section to the run's description (`mlflow.note.content`), after what it holds (the summary and
        Prefect links written when the run was opened)."""
        from tasks.tracking import tags

        existing = self.client.get_run(self.run_id).data.tags.get(tags.NOTE, "")
        self.set_tags({tags.NOTE: f"{existing.rstrip()}\n\n{markdown}" if existing else markdown})

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, folder: Path | str, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(folder), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, data, artifact_file)

    def log_table(self, rows: list[Mapping[str, Any]], artifact_file: str) -> None:
        """Rows as an MLflow table (the run's Artifacts tab shows it; `mlflow.load_table` reads it back)."""
        import pandas as pd

        self.client.log_table(self.run_id, pd.DataFrame(list(rows)), artifact_file)

    def log_dataset(self, dataset: Any, context: str) -> None:
        """Record an `mlflow.data` dataset as an input of the run (name, digest, source, schema)."""
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        from mlflow.exceptions import MlflowException

        inputs = [DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])]
        try:
            self.client.log_inputs(self.run_id, datasets=inputs)
        except MlflowException as exc:
            # runs logging the same new dataset at once (sweep trials, fusion members, parallel `fuseflow run`s)
            # race to insert its row; the loser's retry finds the row and only links it to this run
            duplicate = ("UNIQUE constraint failed", "Duplicate entry", "duplicate key value violates unique constraint")
            if not any(text in str(exc) for text in duplicate):
                raise
            self.client.log_inputs(self.run_id, datasets=inputs)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    return path


def iter_metric_rows(history: Iterable[Mapping[str, float]]) -> Iterable[tuple[int, dict[str, float]]]:
    for row in history:
        yield int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"}
