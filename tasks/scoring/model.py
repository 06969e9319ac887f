"""Which model a scoring run uses: its URI resolved once, at the start, to a registry version (or a run), so every
batch is scored by the same model even if the alias moves meanwhile, and the run records which one it was."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from tasks.errors import ConfigError

_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[\w-]+)$")
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+|latest)$")
_RUN = re.compile(r"^runs:/(?P<run_id>[0-9a-f]{8,64})/(?P<path>.+)$")
_LOGGED = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]{8,64})$")  # an MLflow 3 LoggedModel id


def parse_model_uri(uri: str) -> dict[str, str]:
    """The parts of a model URI; a ValueError naming the accepted forms."""
    for pattern, kind in ((_LOGGED, "logged"), (_ALIAS, "alias"), (_VERSION, "version"), (_RUN, "run")):
        match = pattern.match(uri)
        if match:
            return {"kind": kind, **match.groupdict()}
    raise ValueError(f"not a model URI: {uri!r} (expected models:/NAME@ALIAS, models:/NAME/VERSION, "
                     "models:/NAME/latest, models:/<model_id> or runs:/RUN_ID/PATH)")


@dataclass(frozen=True)
class ResolvedModel:
    """The URI as given, the URI that pins it (a version or a run), and what it points at."""

    uri: str
    pinned_uri: str
    run_id: Optional[str]
    name: Optional[str] = None
    version: Optional[str] = None
    alias: Optional[str] = None

    def tags(self) -> dict[str, str]:
        found = {"fuseflow.scoring.model_uri": self.uri, "fuseflow.scoring.model_pinned_uri": self.pinned_uri,
                 "fuseflow.scoring.model_run_id": self.run_id, "fuseflow.scoring.model_name": self.name,
                 "fuseflow.scoring.model_version": self.version, "fuseflow.scoring.model_alias": self.alias}
        return {k: v for k, v in found.items() if v}


def resolve_model(uri: str, tracking_uri: str) -> ResolvedModel:
    """`uri` pinned to what it names now; a ConfigError at `predict.model` when it names nothing."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    parts = parse_model_uri(uri)
    client = MlflowClient(tracking_uri)
    where = ("predict", "model")
    try:
        if parts["kind"] == "run":
            client.get_run(parts["run_id"])
            return ResolvedModel(uri, uri, parts["run_id"])
        if parts["kind"] == "logged":  # a LoggedModel is immutable: it pins itself
            return ResolvedModel(uri, uri, client.get_logged_model(parts["model_id"]).source_run_id)
        name = parts["name"]
        if parts["kind"] == "alias":
            version = client.get_model_version_by_alias(name, parts["alias"])
        elif parts["version"] == "latest":
            versions = client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"],
                                                    max_results=1)
            if not versions:
                raise ConfigError.single(f"registered model '{name}' has no versions", where)
            version = versions[0]
        else:
            version = client.get_model_version(name, parts["version"])
    except MlflowException as exc:
        raise ConfigError.single(f"model {uri} does not resolve in {tracking_uri}: "
                                 f"{_known(client, parts) or str(exc).splitlines()[0]}", where) from None
    return ResolvedModel(uri, f"models:/{name}/{version.version}", version.run_id, name, str(version.version),
                         parts.get("alias"))


def _known(client: Any, parts: dict[str, str]) -> str:
    """What does exist, for the message: the registered models, or the model's aliases and versions."""
    from mlflow.exceptions import MlflowException

    if parts["kind"] == "run":
        return f"no run {parts['run_id']}"
    if parts["kind"] == "logged":
        return f"no logged model {parts['model_id']}"
    try:
        model = client.get_registered_model(parts["name"])
    except MlflowException:
        from tasks.errors import did_you_mean

        names = [m.name for m in client.search_registered_models(max_results=200)]
        return (f"no registered model '{parts['name']}'{did_you_mean(parts['name'], names)}"
                f" (registered: {', '.join(names) or 'none'})")
    aliases = ", ".join(f"@{a}" for a in (model.aliases or {})) or "none"
    return f"'{parts['name']}' has no {'alias @' + parts['alias'] if parts['kind'] == 'alias' else 'version ' + parts.get('version', '')} (aliases: {aliases})"
