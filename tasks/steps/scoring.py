"""The Prefect tasks of a scoring pipeline: resolve the model URI once, then score every batch with it."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from prefect.cache_policies import NO_CACHE

from tasks.steps.step_task import step


@contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """MLflow's fluent API pointed at `uri` for the block (model URIs resolve against it), then restored."""
    import mlflow

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


@step(name="resolve-model", cache_policy=NO_CACHE, persist_result=False)
def resolve_model(uri: str, tracking_uri: str) -> Any:
    """The version (or run) `uri` names now, pinned for the whole run."""
    from tasks.scoring.model import resolve_model as resolve

    return resolve(uri, tracking_uri)


@step(name="load-profile", cache_policy=NO_CACHE, persist_result=False)
def load_profile(run_id: Optional[str], tracking_uri: str) -> Optional[dict[str, Any]]:
    """The training data's profile (`features/profile.json`) of the model's run, or None (a model without one)."""
    import json
    import tempfile

    import mlflow

    if not run_id:
        return None
    try:
        with tempfile.TemporaryDirectory() as folder:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="features/profile.json",
                                                        dst_path=folder, tracking_uri=tracking_uri)
            return json.loads(Path(local).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - a text model, or one trained before profiles were logged: no drift
        return None


@step(name="score", cache_policy=NO_CACHE, persist_result=False)
def score(config: Any, model_uri: str, tracking_uri: str, base_dir: Path, values: dict[str, str],
          profile: Optional[dict[str, Any]] = None) -> Any:
    """Load the pinned model and score every row into the output (a retry starts the output afresh)."""
    import mlflow

    from tasks.scoring.run import score_rows

    with _tracking(tracking_uri):
        model = mlflow.pyfunc.load_model(model_uri)
    return score_rows(config, model, base_dir, values, profile)
