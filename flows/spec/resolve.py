"""Resolve one pipeline of the project: merge `defaults:`, apply `--set` overrides, validate into a `PipelineSpec`,
run the checks that need the whole project (fusion members, sweep trials), and return a `ResolvedPipeline`.

Every problem becomes a `ConfigIssue` with the file, line, key path and what was expected, and all the
problems of a file are reported in one pass.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from pydantic import ValidationError

from flows.spec.overrides import Override, parse_overrides, set_path
from flows.spec.project import ProjectFile
from flows.spec.pydantic_errors import located_issue, pydantic_issue
from tasks.errors import ConfigError, ConfigIssue, did_you_mean
from tasks.pipeline.resolved import ResolvedPipeline
from tasks.pipeline.spec import PipelineSpec
from tasks.registry import load_components


def resolve(project: ProjectFile, name: str, overrides: Sequence[Override] = ()) -> ResolvedPipeline:
    """Pipeline `name` with `overrides` applied, validated and resolved; raises ConfigError listing every problem."""
    load_components()  # every registry complete before the first schema is built (not from inside pydantic)
    if name not in project.pipelines:
        raise ConfigError([ConfigIssue(f"unknown pipeline '{name}'{did_you_mean(name, project.names)} "
                                       f"(pipelines: {', '.join(project.names)})", file=str(project.path))])
    raw = project.raw_pipeline(name)
    if not isinstance(raw, dict):
        raise ConfigError([located_issue(project, name, (), "expected a mapping of sections (data, model, train, "
                                                            f"...), got {type(raw).__name__}")])
    origins: dict[tuple, str] = {}
    issues: list[ConfigIssue] = []
    for override in overrides:
        try:
            set_path(raw, override.path, override.value)
            origins[override.path] = f"--set {override.text}"
        except (KeyError, IndexError, TypeError) as exc:
            issues.append(ConfigIssue(f"cannot set this key: {exc}", (), origin=f"--set {override.text}"))
    if "name" in raw:
        issues.append(located_issue(project, name, ("name",), "`name` is the pipeline's key under `pipelines:`; remove it"))
    raw["name"] = name
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        issues += [pydantic_issue(project, name, raw, origins, err) for err in exc.errors()]
        raise ConfigError(issues) from None

    def located(found: list[tuple[tuple, str]]) -> list[ConfigIssue]:
        return [located_issue(project, name, path, message, origins) for path, message in found]

    issues += located(spec.preflight(project.base_dir))
    fusion, trials, resolve_trial = None, [], None
    if spec.fusion is not None and not issues:  # members: other pipelines (their `set:` as --set) or model URIs
        from tasks.fusion.checks import check_fusion

        found, fusion = check_fusion(spec, project.names, project.raw_pipeline,
                                     lambda member, sets: resolve(project, member, parse_overrides(sets)).spec)
        issues += located(found)
    if spec.sweep is not None and not issues:  # every trial: this pipeline with the trial's values as --set
        from tasks.sweep.trials import resolve_trials

        base = list(overrides) + [Override("sweep", None, "sweep=null")] + _pinned_split(spec)

        def resolve_trial(values: dict[str, Any]) -> PipelineSpec:
            return resolve(project, name, base + [Override(k, v, f"{k}={json.dumps(v)}") for k, v in values.items()]).spec

        found, trials = resolve_trials(spec, resolve_trial)
        issues += located(found)
    if issues:
        raise ConfigError(issues)
    return ResolvedPipeline(spec, fusion, trials, resolve_trial)


def _pinned_split(spec: PipelineSpec) -> list[Override]:
    """Every trial of a sweep splits the data alike: `data.split.seed` is pinned to the pipeline's seed (as for a
    fusion's members) unless the pipeline sets it or the sweep varies it, so sweeping `seed` varies only the
    initialisation and shuffling, and all trials are ranked on one validation split."""
    split = getattr(spec.data, "split", None)
    swept = [k for k in spec.sweep.parameters if k in ("data", "data.split", "data.split.seed")]
    if split is None or getattr(split, "seed", None) is not None or swept or not hasattr(split, "seed"):
        return []
    return [Override("data.split.seed", spec.seed, f"data.split.seed={spec.seed}")]


def resolve_all(project: ProjectFile) -> dict[str, ResolvedPipeline]:
    """Every pipeline of the file, validated; all problems of all pipelines in one ConfigError."""
    specs, issues = {}, []
    for name in project.names:
        try:
            specs[name] = resolve(project, name)
        except ConfigError as err:
            issues += err.issues
    if issues:
        raise ConfigError(issues)
    return specs
