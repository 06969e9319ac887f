"""Model Registry steps of a run: `tracking.register` registers the run's model, `tracking.promote` moves an alias
(default `champion`) to the new version only when it beats the current holder on the same metric."""
from __future__ import annotations

import contextlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

from pydantic import Field, field_validator

from tasks.registry import StrictModel
from tasks.tracking import tags
from tasks.tracking.logged_model import MODEL_ID_TAG, version_model_id  # noqa: F401 - re-exported

_RESERVED_ALIAS = re.compile(r"^(v\d+|latest)$", re.IGNORECASE)
_ALIAS = re.compile(r"^[\w-]+$")


class PromoteConfig(StrictModel):
    """`promote: {metric: test_f1_macro, mode: max}`: move `alias` to a new version only when it is better."""

    metric: str = Field(description="a metric the run logs, e.g. test_f1_macro or test_rmse")
    mode: Literal["max", "min"] = Field("max", description="max: higher is better; min: lower is better")
    alias: str = Field("champion", description="the registry alias to move, e.g. champion")

    @field_validator("alias")
    @classmethod
    def _valid_alias(cls, value: str) -> str:
        if not _ALIAS.match(value) or _RESERVED_ALIAS.match(value):
            raise ValueError(f"invalid alias {value!r} (letters, digits, '_' and '-'; 'latest' and 'v<number>' "
                             f"are reserved by MLflow)")
        return value


def check_model_name(value: Optional[str]) -> Optional[str]:
    """A registered model name MLflow accepts (not empty, no '/' or ':')."""
    if value is not None and (not value.strip() or "/" in value or ":" in value):
        raise ValueError(f"invalid registered model name {value!r} (not empty, no '/' or ':')")
    return value


@dataclass
class Decision:
    """What registration and promotion did, for the run's tags and the Prefect artifact."""

    model: str
    version: str
    metric: Optional[str] = None
    value: Optional[float] = None
    alias: Optional[str] = None
    champion_version: Optional[str] = None
    champion_value: Optional[float] = None
    promoted: bool = False
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the flow's return value and the artifact."""
        return asdict(self)


def is_better(new: float, current: float, mode: str) -> bool:
    """Strictly better: a tie keeps the current champion."""
    return new > current if mode == "max" else new < current


def register(client: Any, name: str, run_id: str, model_uri: str) -> Any:
    """Register the run's logged model as a new version of `name` (created on first use); the ModelVersion."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    try:
        client.create_registered_model(name, description="registered by fuseflow (tracking.register)")
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    source, model_id = model_source(client, run_id, model_uri)
    version = client.create_model_version(name, source, run_id=run_id, model_id=model_id,
                                          tags={MODEL_ID_TAG: model_id} if model_id else None)
    if model_id:
        link_version(client, model_id, version)
    return version


#: tag on each registered version naming its LoggedModel: MLflow's sqlite/PostgreSQL registry does not keep the
#: `model_id` passed to create_model_version (its versions read back with model_id None)
def link_version(client: Any, model_id: str, version: Any) -> None:
    """List the version on its LoggedModel (tag `mlflow.modelVersions`, as `mlflow.register_model` does): the
    Models tab shows it."""
    import json

    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    model = client.get_logged_model(model_id)
    listed = json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS) or "[]")
    listed.append({"name": version.name, "version": version.version})
    client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(listed)})


def model_source(client: Any, run_id: str, model_uri: str) -> tuple[str, Optional[str]]:
    """(source, logged-model id) to register for a `runs:/<id>/<name>` or `models:/<model_id>` URI: the artifact
    location of the run's LoggedModel `<name>` and its id, else, for a run logged before LoggedModels, the model
    folder in the run's artifacts (no id). The location, not `models:/<model_id>`: MLflow's registry store looks a
    `models:/` source up in the process-wide tracking store, which need not be this run's."""
    from tasks.tracking.logged_model import model_of_run

    if model_uri.startswith("runs:/"):
        owner, _, path = model_uri.removeprefix("runs:/").partition("/")
        name = path.strip("/") or "model"
        logged = model_of_run(client, owner or run_id, name)
        if logged is not None:
            return logged.artifact_location, logged.model_id
        return f"{client.get_run(owner or run_id).info.artifact_uri.rstrip('/')}/{name}", None
    if model_uri.startswith("models:/m-"):
        model_id = model_uri.removeprefix("models:/").strip("/")
        return client.get_logged_model(model_id).artifact_location, model_id
    raise ValueError(f"cannot register {model_uri!r}: expected runs:/<run_id>/<path> or models:/<model_id>")


def current_holder(client: Any, name: str, alias: str, metric: str) -> tuple[Optional[str], Optional[float]]:
    """(version, metric value) of the version holding `alias`; (None, None) when no version holds it."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None, None
    try:
        value = client.get_run(version.run_id).data.metrics.get(metric) if version.run_id else None
    except MlflowException:  # the holder's run was deleted
        value = None
    return str(version.version), value


def register_and_promote(tracking: Any, run_id: str, model_uri: str, tracking_uri: str) -> Optional[Decision]:
    """Register the run's model when `tracking.register` is set; apply `tracking.promote`; tag the run with both.

    The metric of both versions is read from their MLflow runs (the last logged value), so they compare alike.
    """
    if not tracking.register:
        return None
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    promote = tracking.promote
    value = None
    if promote:
        metrics = client.get_run(run_id).data.metrics
        if promote.metric not in metrics:
            raise RuntimeError(f"tracking.promote.metric '{promote.metric}' was not logged by this run "
                               f"(its metrics: {', '.join(sorted(metrics))})")
        value = metrics[promote.metric]
    version = register(client, tracking.register, run_id, model_uri)
    decision = Decision(tracking.register, str(version.version), message=f"registered {tracking.register} "
                        f"version {version.version}")
    if promote:
        with promotion_lock(tracking_uri, decision.model, promote.alias):  # read the holder and move it as one step
            decision = decide(client, decision, promote, value)
        client.set_model_version_tag(decision.model, decision.version, promote.metric, str(value))
    client.set_tag(run_id, tags.REGISTERED_MODEL, f"{decision.model}/{decision.version}")
    client.set_tag(run_id, tags.PROMOTION, decision.message)
    if decision.promoted:
        from tasks.tracking.events import emit_promoted

        emit_promoted(decision, run_id, client.get_run(run_id).data.tags.get(tags.PIPELINE, ""))
    return decision


@contextlib.contextmanager
def promotion_lock(tracking_uri: str, model: str, alias: str) -> Iterator[None]:
    """An exclusive lock per (store, model, alias) for every process of this machine: two runs promoting at once
    would otherwise both read the same holder and both move the alias, the worse one last."""
    import hashlib
    import tempfile

    from tasks.file_lock import exclusive

    folder = Path(tempfile.gettempdir()) / "fuseflow-locks"
    name = hashlib.sha256(f"{tracking_uri}|{model}|{alias}".encode()).hexdigest()[:24]
    with exclusive(folder / f"promote-{name}.lock"):
        yield


def decide(client: Any, decision: Decision, promote: PromoteConfig, value: float) -> Decision:
    """Move the alias to the new version when it beats the current holder (or there is none); say why."""
    held_by, held_value = current_holder(client, decision.model, promote.alias, promote.metric)
    decision.metric, decision.value, decision.alias = promote.metric, value, promote.alias
    decision.champion_version, decision.champion_value = held_by, held_value
    new = f"version {decision.version} ({promote.metric}={value:.4f})"
    if held_by is None:
        decision.promoted, why = True, f"no version held @{promote.alias}"
    elif held_value is None:
        decision.promoted, why = True, f"the holder, version {held_by}, has no {promote.metric}"
    else:
        decision.promoted = is_better(value, held_value, promote.mode)
        sign = (">" if promote.mode == "max" else "<") if decision.promoted else "not better than"
        why = f"{promote.metric} {value:.4f} {sign} {held_value:.4f} of version {held_by} (mode {promote.mode})"
    if decision.promoted:
        client.set_registered_model_alias(decision.model, promote.alias, decision.version)
        decision.message = f"promoted {decision.model} {new} to @{promote.alias}: {why}"
    else:
        decision.message = f"kept @{promote.alias} on version {held_by}: {why}"
    return decision
