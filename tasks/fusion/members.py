"""Fusion members: resolve an MLflow model URI, download a model logged by fuseflow, and get its logits.

A member is anything that gives class logits for a batch of raw inputs (`FusionMember.logits`) and can save
itself into a fused model's folder (`save`). Tabular members rebuild their network from the spec JSON and
safetensors weights that fuseflow logs beside every model (`model/extra_files/`), so no pickle is loaded.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tasks.model_export import SPEC_FILE, WEIGHTS_FILE

TABULAR_FORMAT = "fuseflow-tabular/1"
FUSED_FORMAT = "fuseflow-fusion/1"
_RUNS = re.compile(r"^runs:/(?P<run>[^/]+)/(?P<path>.+)$")
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
    """runs:/<id>/<path>, models:/<name>/<version>, models:/<name>@<alias> -> ResolvedUri, or MemberNotFound."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        raise MemberNotFound(f"cannot resolve {uri}: the tracking store {tracking_uri} does not exist")
    client = MlflowClient(tracking_uri)
    runs, models = _RUNS.match(uri), _MODELS.match(uri)
    try:
        if runs:
            run = client.get_run(runs["run"])
            path = runs["path"].strip("/")
            listed = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, path)}
            if "MLmodel" not in listed:
                raise MemberNotFound(f"cannot resolve {uri}: run {runs['run']} has no model at '{path}'")
            return ResolvedUri(uri, run.info.run_id, uri)
        if models:
            if models["alias"]:
                version = client.get_model_version_by_alias(models["name"], models["alias"])
            else:
                version = client.get_model_version(models["name"], models["version"])
            return ResolvedUri(uri, version.run_id, version.source)
    except MlflowException as exc:
        raise MemberNotFound(f"cannot resolve {uri}: {exc.message} (tracking store {tracking_uri})") from None
    raise MemberNotFound(f"cannot resolve {uri}: expected runs:/<run_id>/<path>, models:/<name>/<version> "
                         "or models:/<name>@<alias>")


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


def read_model_spec(resolved: ResolvedUri, tracking_uri: str) -> dict[str, Any]:
    """The member's spec: the JSON fuseflow logs beside tabular models, or what a text model's MLmodel records."""
    try:
        path = download(resolved, tracking_uri, f"extra_files/{SPEC_FILE}")
        return json.loads(path.read_text(encoding="utf-8"))
    except MemberNotFound:
        pass
    spec = text_spec(_read_mlmodel(download(resolved, tracking_uri, "MLmodel")))
    if spec is None:
        raise MemberNotFound(f"{resolved.uri} is not a classifier logged by fuseflow (no extra_files/{SPEC_FILE}, "
                             "not a text-classification transformers model with fuseflow.classes)")
    return spec


def _read_mlmodel(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


def text_spec(mlmodel: dict[str, Any]) -> Optional[dict[str, Any]]:
    from tasks.fusion.text_member import mlflow_text_spec

    return mlflow_text_spec(mlmodel)


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


class TabularMember(FusionMember):
    """A tabular network with its fitted feature scaling, rebuilt from a fuseflow model folder."""

    kind = "tabular"

    def __init__(self, name: str, network: Any, spec: dict[str, Any]) -> None:
        self.name, self.network, self.spec = name, network, spec
        self.classes = list(spec.get("classes") or [])
        scaling = spec.get("scaling") or {}
        n = int(spec["in_features"])
        self.mean = np.asarray(scaling.get("feature_mean") or [0.0] * n, dtype=np.float32)
        self.scale = np.asarray(scaling.get("feature_scale") or [1.0] * n, dtype=np.float32)

    @classmethod
    def from_dir(cls, name: str, model_dir: Path) -> "TabularMember":
        import tasks.models  # noqa: F401 - registers the model types the spec names (a fresh process has none)
        from tasks.model_export import load_tabular_network

        network, spec = load_tabular_network(model_dir)
        if spec.get("task") != "classification":
            raise ValueError(f"member {name} is a {spec.get('task')} model; fusion combines classifiers")
        return cls(name, network, spec)

    def logits(self, inputs: Any) -> np.ndarray:
        import torch

        X = np.asarray(inputs, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.mean):
            raise ValueError(f"member {self.name} expects rows of {len(self.mean)} features, got shape {X.shape}")
        with torch.no_grad():
            self.network.eval()
            return self.network(torch.from_numpy((X - self.mean) / self.scale)).double().numpy()

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in self.network.state_dict().items()}

    def with_state(self, name: str, state: dict[str, Any]) -> "TabularMember":
        """A copy of this member with other weights (a soup)."""
        import copy

        network = copy.deepcopy(self.network)
        network.load_state_dict(state)
        return TabularMember(name, network.eval(), self.spec)

    def save(self, folder: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        extras = folder / "extra_files"
        extras.mkdir(parents=True, exist_ok=True)
        (extras / SPEC_FILE).write_text(json.dumps(self.spec, indent=2, default=str), encoding="utf-8")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(extras / WEIGHTS_FILE))
        return {"name": self.name, "kind": self.kind}


#: member kind -> loader(name, folder) of a member saved by `FusionMember.save` (text members register here too)
MEMBER_LOADERS: dict[str, Any] = {"tabular": TabularMember.from_dir}


def member_from_dir(name: str, model_dir: Path, spec: Optional[dict[str, Any]] = None) -> FusionMember:
    """Rebuild a member from a downloaded model folder, by the format recorded in its spec."""
    spec_path = Path(model_dir) / "extra_files" / SPEC_FILE
    mlmodel = Path(model_dir) / "MLmodel"
    if spec is None and spec_path.is_file():
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    elif spec is None and mlmodel.is_file():
        spec = text_spec(_read_mlmodel(mlmodel))
    if spec is None:
        raise MemberNotFound(f"{name}: {model_dir} is not a classifier logged by fuseflow")
    fmt = spec.get("format", "")
    if fmt == FUSED_FORMAT:
        raise MemberNotFound(f"{name} is a fused model; list its members instead of fusing a fusion")
    kind = spec.get("kind") or ("tabular" if fmt == TABULAR_FORMAT else None)
    if kind not in MEMBER_LOADERS:
        raise MemberNotFound(f"{name}: unsupported model format {fmt!r} (fusion supports: {', '.join(MEMBER_LOADERS)})")
    return MEMBER_LOADERS[kind](name, Path(model_dir))


def load_member(name: str, uri: str, tracking_uri: str) -> FusionMember:
    """Resolve, download and rebuild the member at `uri` (files are read into memory, the download is removed)."""
    resolved = resolve_uri(uri, tracking_uri)
    tmp = Path(tempfile.mkdtemp(prefix="fuseflow-member-"))
    try:
        folder = download(resolved, tracking_uri, dst=tmp)
        member = member_from_dir(name, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if member.kind == "text" and getattr(member, "max_length", None) is None and resolved.run_id:
        member.max_length = tokenize_length(read_run_config(resolved.run_id, tracking_uri))
    return member


def tokenize_length(config: Optional[dict[str, Any]]) -> Optional[int]:
    """The `max_length` of a text pipeline's `tokenize` step (what its model was trained and evaluated with)."""
    if not config:
        return None
    for step in config.get("preprocess") or []:
        if isinstance(step, dict) and step.get("name") == "tokenize":
            return step.get("max_length")
    from tasks.tokenize import TokenizeConfig

    return TokenizeConfig().max_length  # a text pipeline without a tokenize step uses the default one
