"""Rebuild a fusion member of any kind from a model URI or a downloaded model folder, by the format its spec records."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from tasks.export.torch_model import SPEC_FILE
from tasks.fusion.members.base import (FUSED_FORMAT, TABULAR_FORMAT, FusionMember, MemberNotFound, ResolvedUri, download,
                                       read_mlmodel, read_run_config, resolve_uri)
from tasks.fusion.members.tabular import TabularMember
from tasks.fusion.members.text import TextMember, mlflow_text_spec


def read_model_spec(resolved: ResolvedUri, tracking_uri: str) -> dict[str, Any]:
    """The member's spec: the JSON fuseflow logs beside tabular models, or what a text model's MLmodel records."""
    try:
        path = download(resolved, tracking_uri, f"extra_files/{SPEC_FILE}")
        return json.loads(path.read_text(encoding="utf-8"))
    except MemberNotFound:
        pass
    spec = mlflow_text_spec(read_mlmodel(download(resolved, tracking_uri, "MLmodel")))
    if spec is None:
        raise MemberNotFound(f"{resolved.uri} is not a classifier logged by fuseflow (no extra_files/{SPEC_FILE}, "
                             "not a text-classification transformers model with fuseflow.classes)")
    return spec


#: member kind -> loader(name, folder) of a member saved by `FusionMember.save`
MEMBER_LOADERS: dict[str, Callable[[str, Path], FusionMember]] = {"tabular": TabularMember.from_dir,
                                                                 "text": TextMember.from_dir}


def member_from_dir(name: str, model_dir: Path, spec: Optional[dict[str, Any]] = None) -> FusionMember:
    """Rebuild a member from a downloaded model folder, by the format recorded in its spec."""
    spec_path = Path(model_dir) / "extra_files" / SPEC_FILE
    mlmodel = Path(model_dir) / "MLmodel"
    if spec is None and spec_path.is_file():
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    elif spec is None and mlmodel.is_file():
        spec = mlflow_text_spec(read_mlmodel(mlmodel))
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
    from tasks.data.preprocess.tokenize import TokenizeConfig

    return TokenizeConfig().max_length  # a text pipeline without a tokenize step uses the default one
