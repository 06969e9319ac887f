"""Resolve a fusion pipeline's members at validation time and check them against each other.

Runs before anything trains: unknown member pipelines (with a "did you mean"), members that are fusions
themselves, URIs that do not resolve, members whose data or label space differ, and soups over members of
different architectures are reported as (key path, message) pairs, which `flows.spec.resolve` turns into ConfigIssues.
Inline members share one data split: `data.split.seed` defaults to the fusion pipeline's seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from tasks.errors import ConfigError, did_you_mean
from tasks.tracking.logger import flatten

Issue = tuple[tuple, str]
ResolveMember = Callable[[str, dict[str, Any]], Any]  # (pipeline name, overrides) -> its PipelineSpec


@dataclass
class ResolvedMember:
    """One member, ready to run or load: a validated pipeline spec (inline) or a resolved URI."""

    index: int
    name: str
    describe: str
    spec: Any = None  # PipelineSpec of an inline member
    overrides: dict[str, Any] = field(default_factory=dict)
    uri: Optional[str] = None
    run_id: Optional[str] = None  # the run that logged a URI member
    model_spec: Optional[dict[str, Any]] = None  # a URI member's fuseflow_model.json
    data: Optional[dict[str, Any]] = None  # the member's data section with its effective split seed
    preprocess: Optional[list[Any]] = None
    model: Optional[dict[str, Any]] = None
    seed: Optional[int] = None

    @property
    def inline(self) -> bool:
        return self.spec is not None


@dataclass
class ResolvedFusion:
    """All members plus the data the fusion evaluates on (the members' shared data section)."""

    members: list[ResolvedMember]
    data: dict[str, Any]


def tracking_uri_of(spec: Any) -> str:
    """The store URI members resolve against (like `resolve_tracking_uri`, without creating anything)."""
    import os

    from tasks.tracking.logger import DEFAULT_TRACKING_URI

    return os.environ.get("MLFLOW_TRACKING_URI") or spec.tracking.uri or DEFAULT_TRACKING_URI


def check_fusion(spec: Any, names: Sequence[str], raw_of: Callable[[str], Any],
                 resolve_member: ResolveMember) -> tuple[list[Issue], Optional[ResolvedFusion]]:
    """Resolve every member of `spec.fusion`: the problems found, and the resolved fusion (None with problems)."""
    fusion = spec.fusion
    tracking_uri = tracking_uri_of(spec)
    issues: list[Issue] = []
    members: list[ResolvedMember] = []
    for i, (member, name) in enumerate(zip(fusion.members, fusion.member_names())):
        where = ("fusion", "members", i)
        if hasattr(member, "pipeline"):
            found = _inline(i, name, member, spec, names, raw_of, resolve_member, where)
        else:
            found = _from_uri(i, name, member, tracking_uri, where)
        if isinstance(found, list):
            issues += found
        else:
            members.append(found)
    if issues:
        return issues, None
    issues += _same_data(members)
    if fusion.method.level == "weights":
        issues += _same_architecture(members)
    return issues, (None if issues else ResolvedFusion(members, members[0].data))


def _inline(i: int, name: str, member: Any, spec: Any, names: Sequence[str], raw_of: Callable[[str], Any],
            resolve_member: ResolveMember, where: tuple) -> ResolvedMember | list[Issue]:
    target = member.pipeline
    if target not in names:
        return [(where + ("pipeline",), f"unknown pipeline '{target}'{did_you_mean(target, names)} "
                                        f"(pipelines: {', '.join(names)})")]
    raw = raw_of(target)
    if target == spec.name or (isinstance(raw, dict) and raw.get("fusion") is not None):
        return [(where + ("pipeline",), f"'{target}' is a fusion pipeline; members must be training pipelines")]
    if isinstance(raw, dict) and raw.get("sweep") is not None and "sweep" not in member.set:
        return [(where + ("pipeline",), f"'{target}' is a sweep; members must be training pipelines (give the member "
                                        "`set: {sweep: null}` to train it once, or use that sweep's `fuse_top`)")]
    overrides = dict(member.set)
    if not _sets_split_seed(raw, overrides):
        overrides = {"data.split.seed": spec.seed, **overrides}  # one split for every member; `seed` varies init
    try:
        member_spec = resolve_member(target, overrides)
    except ConfigError as err:
        return [(where + (("set",) if member.set else ("pipeline",)), f"member pipeline '{target}' "
                 f"(set: {member.set or {}}) is invalid: {issue}") for issue in err.issues]
    task = member_spec.data.task
    if task == "auto":
        task = member_spec.data.inferred_task()
    if task == "regression":
        return [(where + ("pipeline",), f"member pipeline '{target}' is a regression; fusion combines classifiers")]
    data = member_spec.data.model_dump(mode="json", exclude_none=True)
    return ResolvedMember(i, name, member.describe(), spec=member_spec, overrides=overrides, data=data,
                          preprocess=[s.model_dump(mode="json") for s in member_spec.preprocess],
                          model=member_spec.model.model_dump(mode="json"), seed=member_spec.seed)


def _sets_split_seed(raw: Any, overrides: dict[str, Any]) -> bool:
    declared = (((raw or {}).get("data") or {}).get("split") or {}) if isinstance(raw, dict) else {}
    return "seed" in declared or "data.split.seed" in overrides or "data.split" in overrides or "data" in overrides


def _from_uri(i: int, name: str, member: Any, tracking_uri: str, where: tuple) -> ResolvedMember | list[Issue]:
    from tasks.fusion.members.base import MemberNotFound, read_run_config, resolve_uri
    from tasks.fusion.members.load import read_model_spec

    try:
        resolved = resolve_uri(member.model, tracking_uri)
        model_spec = read_model_spec(resolved, tracking_uri)
    except MemberNotFound as exc:
        return [(where + ("model",), str(exc))]
    if model_spec.get("task", "classification") != "classification":
        return [(where + ("model",), f"{member.model} is a {model_spec.get('task')} model; fusion combines classifiers")]
    config = read_run_config(resolved.run_id, tracking_uri) if resolved.run_id else None
    if not config or "data" not in config:
        return [(where + ("model",), f"{member.model}: its run has no fuseflow pipeline.yaml, so its training data "
                                     "cannot be checked against the other members")]
    data = dict(config["data"])
    split = dict(data.get("split") or {})
    split.setdefault("seed", config.get("seed", 42))
    data["split"] = split
    return ResolvedMember(i, name, member.describe(), uri=member.model, run_id=resolved.run_id, model_spec=model_spec,
                          data=data, preprocess=config.get("preprocess") or [], model=model_spec.get("model"),
                          seed=config.get("seed"))


def _same_data(members: list[ResolvedMember]) -> list[Issue]:
    """Every member must be trained on the same data split (so test is unseen by all) and label space."""
    issues = []
    ref = members[0]
    ref_flat = flatten(ref.data)
    for member in members[1:]:
        flat = flatten(member.data)
        diff = [k for k in sorted(set(ref_flat) | set(flat)) if ref_flat.get(k) != flat.get(k)]
        if diff:
            shown = "; ".join(f"data.{k}: {flat.get(k, '(unset)')} vs {ref_flat.get(k, '(unset)')}" for k in diff[:4])
            issues.append((("fusion", "members", member.index), f"members must share their data and label space: "
                           f"{member.name} ({member.describe}) differs from {ref.name} ({ref.describe}): {shown}"))
            continue
        if member.model_spec and ref.model_spec and member.model_spec.get("classes") != ref.model_spec.get("classes"):
            issues.append((("fusion", "members", member.index), f"members must share their label space: {member.name} "
                           f"has classes {member.model_spec.get('classes')}, {ref.name} has {ref.model_spec.get('classes')}"))
    return issues


def _same_architecture(members: list[ResolvedMember]) -> list[Issue]:
    """Soups average weights: members need one architecture (checked by building each network) and preprocessing."""
    ref = members[0]
    issues = []
    for member in members[1:]:
        where = ("fusion", "members", member.index)
        if member.preprocess != ref.preprocess:
            issues.append((where, f"soup members must share their preprocessing: {member.name} has "
                                  f"{member.preprocess}, {ref.name} has {ref.preprocess}"))
            continue
        mismatch = _first_mismatch(ref, member)
        if mismatch:
            issues.append((where, mismatch))
    return issues


def _first_mismatch(ref: ResolvedMember, member: ResolvedMember) -> Optional[str]:
    """The first parameter whose name or shape differs between the two members' networks, as a message."""
    from tasks.fusion.base import SoupMismatch, check_same_shapes

    if member.model == ref.model:
        return None  # one model config: one architecture (and no torch import at validation)
    sizes = next(((m.model_spec["in_features"], m.model_spec["out_features"]) for m in (ref, member) if m.model_spec),
                 (8, 3))  # probe sizes when no member's data sizes are known yet
    try:
        states = [_network_shapes(m.model, *sizes) for m in (ref, member)]
        check_same_shapes(states, [ref.name, member.name])
    except SoupMismatch as exc:
        return (f"cannot average weights: parameter '{exc.parameter}' differs between {member.name} and {ref.name} "
                f"(model {member.model} vs {ref.model}); soups need members of one architecture")
    except Exception:  # noqa: BLE001 - a model that cannot be built here is checked when the soup is made
        return None
    return None


def _network_shapes(model: Optional[dict[str, Any]], in_features: int, out_features: int) -> dict[str, Any]:
    import torch

    from tasks.registry import MODELS

    if not model:
        raise ValueError("no model config")
    config = MODELS.get(model["type"]).model_validate(model)
    with torch.device("meta"):
        network = config.build(in_features, out_features)
    return dict(network.state_dict())
