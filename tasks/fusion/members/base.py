"""What every fusion member shares: resolving an MLflow model URI, downloading it, and the `FusionMember` interface.

A member is anything that gives class logits for a batch of raw inputs (`FusionMember.logits`) and can save
itself into a fused model's folder (`save`); tasks/fusion/members/tabular.py and text.py are the two kinds, and
load.py rebuilds a member of either kind from a downloaded model folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np


TABULAR_FORMAT = "fuseflow-tabular/1"
FUSED_FORMAT = "fuseflow-fusion/1"
_RUNS = re.compile(r"^runs:/(?P<run>[^/]+)/(?P<path>.+)$")
_MODEL_ID = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]+)$")
_MODELS = re.compile(r"^models:/(?P<name>[^/@]+)(/(?P<version>[^/]+)|@(?P<alias>[^/]+))$")


class MemberNotFound(ValueError):
    """A model URI that does not resolve to a model logged by fuseflow."""


@dataclass
class ResolvedUri:
    """Where a model URI points: the run that logged it and a base URI its files can be downloaded from."""

    uri: str
    run_id: Optional[str]
    artifact_uri: str


def resolve_uri(uri: str, tracking_uri: str) -> ResolvedUri:
    """runs:/<id>/<path>, models:/<model_id>, models:/<name>/<version>, models:/<name>@<alias> -> ResolvedUri, or
    MemberNotFound."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        raise MemberNotFound(f"cannot resolve {uri}: the tracking store {tracking_uri} does not exist")
    from tasks.tracking.logged_model import model_of_run

    client = MlflowClient(tracking_uri)
    runs, model_id, models = _RUNS.match(uri), _MODEL_ID.match(uri), _MODELS.match(uri)
    try:
        if model_id:  # a LoggedModel by its id
            logged = client.get_logged_model(model_id["model_id"])
            return ResolvedUri(uri, logged.source_run_id, logged.artifact_location)
        if runs:
            run = client.get_run(runs["run"])
            path = runs["path"].strip("/")
            logged = model_of_run(client, run.info.run_id, path)  # the run's LoggedModel of that name
            if logged is not None:
                return ResolvedUri(uri, run.info.run_id, logged.artifact_location)
            listed = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, path)}
            if "MLmodel" not in listed:
                raise MemberNotFound(f"cannot resolve {uri}: run {runs['run']} has no model at '{path}'")
            return ResolvedUri(uri, run.info.run_id, uri)
        if models:
            if models["alias"]:
                version = client.get_model_version_by_alias(models["name"], models["alias"])
            else:
                version = client.get_model_version(models["name"], models["version"])
            source = version.source
            if source.startswith("models:/m-"):  # registered from a LoggedModel: its files are where it lives
                source = client.get_logged_model(source.removeprefix("models:/")).artifact_location
            return ResolvedUri(uri, version.run_id, source)
    except MlflowException as exc:
        raise MemberNotFound(f"cannot resolve {uri}: {exc.message} (tracking store {tracking_uri})") from None
    raise MemberNotFound(f"cannot resolve {uri}: expected runs:/<run_id>/<path>, models:/<model_id>, "
                         "models:/<name>/<version> or models:/<name>@<alias>")


def download(resolved: ResolvedUri, tracking_uri: str, subpath: str = "", dst: Optional[Path] = None) -> Path:
    """Download the model folder (or one file of it) to a local path."""
    import mlflow.artifacts

    target = resolved.artifact_uri.rstrip("/") + (f"/{subpath}" if subpath else "")
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=target, dst_path=str(dst) if dst else None,
                                                        tracking_uri=tracking_uri))
    except Exception as exc:  # noqa: BLE001 - any store error means the member cannot be used
        raise MemberNotFound(f"cannot download {resolved.uri}{'/' + subpath if subpath else ''}: "
                             f"{type(exc).__name__}: {exc}".splitlines()[0]) from None


def read_mlmodel(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


def read_run_config(run_id: str, tracking_uri: str) -> Optional[dict[str, Any]]:
    """The resolved pipeline config a fuseflow run logged as `pipeline.yaml` (None when it has none)."""
    import mlflow.artifacts
    import yaml

    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="pipeline.yaml", tracking_uri=tracking_uri)
    except Exception:  # noqa: BLE001 - not a fuseflow run
        return None
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    pipelines = data.get("pipelines") or {}
    return next(iter(pipelines.values()), None) if len(pipelines) == 1 else None


class FusionMember:
    """A trained model that gives class logits for raw inputs."""

    name: str
    classes: list[Any]
    kind: str

    def logits(self, inputs: Any) -> np.ndarray:
        """(samples, classes) logits for raw inputs (feature rows, or texts for text members)."""
        raise NotImplementedError

    def save(self, folder: Path) -> dict[str, Any]:
        """Write what the fused model needs to rebuild this member into `folder`; returns its manifest entry."""
        raise NotImplementedError
