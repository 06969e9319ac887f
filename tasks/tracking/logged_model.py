"""Log a saved MLflow model folder as an MLflow 3 LoggedModel of a run, through `MlflowClient` and an explicit run id
(fuseflow logs from task threads: no active run), and link the run's final metrics to it.

The model is named `model`, so `runs:/<run_id>/model` keeps resolving to it (MLflow 3's runs:/ repository finds a
run's LoggedModel by name); `models:/<model_id>` names it directly. Its artifacts live in the model's own location
(`<experiment>/models/<model_id>/artifacts`), not in the run's artifacts.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from tasks.tracking import tags
from tasks.tracking.artifact_files import link_or_copy, local_artifact_dir

MODEL_NAME = "model"
MLMODEL = "MLmodel"
REGISTERED_META = "registered_model_meta"
#: LoggedModel tags set on copies (a reused run's or a sweep's model): where the files came from
COPIED_FROM = "fuseflow.copied_from"
SOURCE_MODEL_ID = "fuseflow.source_model_id"
#: run tags carried onto the run's LoggedModel, so the Models tab can be filtered like the runs
_RUN_TAGS = (tags.PIPELINE, tags.CONFIG_HASH, tags.GIT_COMMIT, "mlflow.user", "mlflow.source.name",
             "mlflow.source.type")
_CONTEXTS = {"test_": "test", "val_": "validation"}


def run_model_uri(run_id: str, name: str = MODEL_NAME) -> str:
    """`runs:/<run_id>/model`: what a run summary carries; MLflow 3 resolves it to the run's LoggedModel."""
    return f"runs:/{run_id}/{name}"


def models_of_run(client: Any, run_id: str, name: str = MODEL_NAME, experiment_id: Optional[str] = None) -> list[Any]:
    """The run's LoggedModels called `name` (not deleted), newest first."""
    experiment_id = experiment_id or client.get_run(run_id).info.experiment_id
    found = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = '{name}'")
    return sorted(found, key=lambda m: m.creation_timestamp or 0, reverse=True)


def model_of_run(client: Any, run_id: str, name: str = MODEL_NAME) -> Optional[Any]:
    """The run's READY LoggedModel called `name`, or None (a run logged before LoggedModels, or a failed one)."""
    ready = [m for m in models_of_run(client, run_id, name) if str(getattr(m.status, "name", m.status)) == "READY"]
    return ready[0] if ready else None


@contextlib.contextmanager
def model_uris_in(tracking_uri: str) -> Iterator[None]:
    """Model URIs resolve in store `tracking_uri` inside the block: MLflow resolves `models:/<model_id>` (and so a
    `runs:/<run_id>/model` whose model is a LoggedModel, and `models:/NAME/VERSION`) in the process-wide tracking
    store, whatever tracking URI its caller passes. Both the global and MLFLOW_TRACKING_URI are restored after."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    saved_global, saved_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")  # noqa: SLF001
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        if saved_global is not None:
            mlflow.set_tracking_uri(saved_global)
        else:
            utils._tracking_uri = None  # noqa: SLF001 - unset again: the env (or MLflow's default) decides
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def has_model(client: Any, run: Any, name: str = MODEL_NAME) -> bool:
    """Whether the run has a model to load: a READY LoggedModel `name`, or (a run logged before LoggedModels) an
    MLmodel in its artifacts' `name/`. Asked of the store `client` names: MLflow's own `runs:/` listing looks a
    LoggedModel up in the process-wide tracking store instead."""
    if model_of_run(client, run.info.run_id, name) is not None:
        return True
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(run.info.artifact_uri, tracking_uri=client._tracking_client.tracking_uri)  # noqa: SLF001
    listed = repo.list_artifacts(name)
    return any(Path(a.path).name == MLMODEL for a in listed)


def log_model_folder(client: Any, run_id: str, folder: Path, model_type: Optional[str] = None,
                     model_tags: Optional[Mapping[str, str]] = None, datasets_of: Optional[str] = None,
                     name: str = MODEL_NAME) -> Any:
    """Log the saved MLflow model at `folder` as the run's LoggedModel `name` (params: the run's; tags: its
    pipeline, config hash, git commit, source), record it as the run's output, link the final metrics to it
    (`link_final_metrics`, datasets read from run `datasets_of`, default this run), and mark it READY; FAILED
    and re-raised on any error. Earlier models of this run and name (a retried step) are deleted first, so
    `runs:/<run_id>/<name>` names one model. `folder/MLmodel` is replaced by a fresh file naming the model."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    run = client.get_run(run_id)
    for old in models_of_run(client, run_id, name, run.info.experiment_id):
        client.delete_logged_model(old.model_id)
    carried = {k: run.data.tags[k] for k in _RUN_TAGS if run.data.tags.get(k)}
    model = client.create_logged_model(run.info.experiment_id, name=name, source_run_id=run_id,
                                       params={k: str(v) for k, v in run.data.params.items()},
                                       tags={**carried, **{k: str(v) for k, v in (model_tags or {}).items()}},
                                       model_type=model_type)
    try:
        # written by MLflow into a model folder loaded as models:/NAME/VERSION: the copy's own registration writes
        # its own, and a hard-linked one would be rewritten through the link into the source model's folder
        (Path(folder) / REGISTERED_META).unlink(missing_ok=True)
        _rewrite_mlmodel(Path(folder) / MLMODEL, run_id, model)
        _store_files(client, model, Path(folder))
        client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
        link_final_metrics(client, run_id, model.model_id, datasets_of)
    except BaseException:
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    return client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)


def copy_model(client: Any, source_uri: str, run_id: str, tracking_uri: str, model_type: Optional[str] = None,
               model_tags: Optional[Mapping[str, str]] = None, datasets_of: Optional[str] = None) -> Any:
    """A new LoggedModel of run `run_id` holding the files of the model at `source_uri` (any model URI: runs:/,
    models:/NAME/VERSION, models:/NAME@ALIAS, models:/<model_id>), tagged with where they came from; local files
    are hard-linked, not copied. Its type is the source LoggedModel's unless `model_type` is given."""
    source = _source_model(client, source_uri)
    extra = {COPIED_FROM: source_uri, **({SOURCE_MODEL_ID: source.model_id} if source else {}), **(model_tags or {})}
    with tempfile.TemporaryDirectory(prefix="fuseflow-model-copy-") as tmp:
        folder = Path(tmp) / MODEL_NAME
        local = local_artifact_dir(source.artifact_location) if source else None
        if local is not None and (local / MLMODEL).is_file():
            shutil.copytree(local, folder, copy_function=link_or_copy)
        else:
            import mlflow.artifacts

            with model_uris_in(tracking_uri):
                downloaded = mlflow.artifacts.download_artifacts(artifact_uri=source_uri, dst_path=tmp,
                                                                 tracking_uri=tracking_uri)
            folder = Path(downloaded)
        return log_model_folder(client, run_id, folder, model_type or (source.model_type if source else None),
                                extra, datasets_of)


def link_final_metrics(client: Any, run_id: str, model_id: str, datasets_of: Optional[str] = None) -> list[str]:
    """Link the run's final `test_*` metrics (with the test dataset) and `val_*` metrics at the epoch whose weights
    the model keeps (with the validation dataset) to LoggedModel `model_id`; returns the keys linked.

    Each is logged again with its own timestamp, step and value plus `model_id`/dataset: MLflow keeps one row in
    the run's history (an identical row is not stored twice) and records the metric on the model, as
    `log_model` does for the metrics of its step."""
    from mlflow.entities import Metric

    run = client.get_run(run_id)
    datasets = run_datasets(client.get_run(datasets_of) if datasets_of else run)
    kept = kept_epoch(run)
    linked: list[Metric] = []
    for key in sorted(run.data.metrics):
        prefix = next((p for p in _CONTEXTS if key.startswith(p)), None)
        if prefix is None:
            continue
        history = client.get_metric_history(run_id, key)
        if not history:
            continue
        at = [m for m in history if m.step == kept] if prefix == "val_" and kept is not None else []
        metric = max(at or history, key=lambda m: (m.step, m.timestamp))
        name, digest = datasets.get(_CONTEXTS[prefix], (None, None))
        linked.append(Metric(key, metric.value, metric.timestamp, metric.step, model_id=model_id,
                             dataset_name=name, dataset_digest=digest, run_id=run_id))
    for i in range(0, len(linked), 1000):
        client.log_batch(run_id, metrics=linked[i:i + 1000])
    return [m.key for m in linked]


def kept_epoch(run: Any) -> Optional[int]:
    """The epoch whose weights the run's model keeps when it is not the last one (early stopping's
    `restore_best`, hf_trainer's `best_model_metric`), else None (the last epoch's)."""
    params = run.data.params
    best = run.data.metrics.get("best_epoch")
    keeps_best = params.get("train.early_stopping.restore_best") == "True" or bool(params.get("train.best_model_metric"))
    return int(best) if best and keeps_best else None


def run_datasets(run: Any) -> dict[str, tuple[str, str]]:
    """context (training, validation, test) -> (name, digest) of the run's dataset inputs."""
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    found: dict[str, tuple[str, str]] = {}
    for item in (run.inputs.dataset_inputs if run.inputs else []):
        context = next((t.value for t in item.tags if t.key == MLFLOW_DATASET_CONTEXT), None)
        if context and context not in found:
            found[context] = (item.dataset.name, item.dataset.digest)
    return found


def _source_model(client: Any, uri: str) -> Optional[Any]:
    """The LoggedModel a model URI names (runs:/ of a run with one, models:/<id>, a registry version with a
    model id), or None (a model logged as plain run artifacts)."""
    from mlflow.exceptions import MlflowException

    try:
        if uri.startswith("runs:/"):
            run_id, _, path = uri.removeprefix("runs:/").partition("/")
            return model_of_run(client, run_id, path.strip("/") or MODEL_NAME)
        if uri.startswith("models:/m-"):
            return client.get_logged_model(uri.removeprefix("models:/").strip("/"))
        if uri.startswith("models:/"):
            name, _, ref = uri.removeprefix("models:/").partition("@")
            if ref:
                version = client.get_model_version_by_alias(name, ref)
            else:
                name, _, number = name.partition("/")
                version = client.get_model_version(name, number)
            source = version.source or ""
            model_id = version_model_id(version) or (source.removeprefix("models:/") if source.startswith("models:/m-")
                                                     else None)
            return client.get_logged_model(model_id) if model_id else None
    except MlflowException:
        return None
    return None


MODEL_ID_TAG = "fuseflow.model_id"  # on a registry version: the LoggedModel it was registered from


def version_model_id(version: Any) -> Optional[str]:
    """The LoggedModel id of a registry version: its `model_id` where the store keeps it, else fuseflow's tag."""
    return getattr(version, "model_id", None) or (version.tags or {}).get(MODEL_ID_TAG)


def _rewrite_mlmodel(path: Path, run_id: str, model: Any) -> None:
    """MLmodel names the run and the LoggedModel as `log_model` writes them; a new file (the old one may be a
    hard link to another model's)."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    data.update({"run_id": run_id, "model_id": model.model_id, "model_uuid": model.model_id,
                 "artifact_path": model.artifact_location})
    path.unlink()
    path.write_text(yaml.safe_dump(data, default_flow_style=False, sort_keys=False), encoding="utf-8")


def _store_files(client: Any, model: Any, folder: Path) -> None:
    """The folder's files into the model's artifact location: hard links on a local store, else an upload."""
    target = local_artifact_dir(model.artifact_location)
    if target is None:
        client.log_model_artifacts(model.model_id, str(folder))
        return
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(folder, target, copy_function=link_or_copy, dirs_exist_ok=True)
