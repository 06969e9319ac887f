"""Load pipelines.yaml: merge `defaults:`, apply `--set` overrides, validate into `PipelineSpec`s.

Every problem becomes a `ConfigIssue` with the file, line, key path and what was expected, and all the
problems of a file are reported in one pass.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from flows.yaml_lines import LocatedYaml, load_located
from tasks.errors import ConfigError, ConfigIssue, did_you_mean
from tasks.pipeline_config import PipelineSpec

DEFAULT_FILE = "pipelines.yaml"
TOP_LEVEL_KEYS = ("defaults", "pipelines")
_KEY = re.compile(r"^[A-Za-z_][\w-]*(\.([A-Za-z_][\w-]*|\d+))*$")


@dataclass
class Override:
    """One `--set dotted.key=value` (value parsed as YAML)."""

    key: str
    value: Any
    text: str

    @property
    def path(self) -> tuple[Any, ...]:
        return tuple(int(p) if p.isdigit() else p for p in self.key.split("."))


def parse_override(text: str) -> Override:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.match(key):
        raise ConfigError([ConfigIssue(f"expected KEY=VALUE with a dotted key, e.g. train.optimizer.lr=3e-4",
                                       origin=f"--set {text!r}")])
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(f"the value is not valid YAML: {exc}".splitlines()[0],
                                       origin=f"--set {text}")]) from None
    return Override(key, value, text)


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> list[Override]:
    """CLI strings (`k=v`) or a mapping (deployment parameters) -> overrides; all bad ones reported together."""
    if not items:
        return []
    if isinstance(items, Mapping):
        return [parse_override(f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}")
                if not isinstance(v, str) else Override(k, yaml.safe_load(v) if v.strip() else "", f"{k}={v}")
                for k, v in items.items()]
    overrides, issues = [], []
    for text in items:
        try:
            overrides.append(parse_override(text))
        except ConfigError as err:
            issues += err.issues
    if issues:
        raise ConfigError(issues)
    return overrides


@dataclass
class ProjectFile:
    """The parsed pipelines.yaml, its line map and folder (relative data paths resolve against it)."""

    path: Path
    located: LocatedYaml

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def pipelines(self) -> dict[str, Any]:
        return self.located.data.get("pipelines") or {}

    @property
    def names(self) -> list[str]:
        return list(self.pipelines)

    def raw_pipeline(self, name: str) -> dict[str, Any]:
        """The pipeline's mapping with `defaults:` merged underneath (its own keys win)."""
        defaults = self.located.data.get("defaults") or {}
        return deep_merge(copy.deepcopy(defaults), copy.deepcopy(self.pipelines[name] or {}))

    def line_of(self, name: str, path: Sequence[Any]) -> int | None:
        """Line of a key of pipeline `name`: its own, else the default it inherited, else the pipeline's."""
        own = self.located.lines.get(("pipelines", name) + tuple(path))
        if own is not None:
            return own
        for end in range(len(path), 0, -1):
            line = self.located.lines.get(("defaults",) + tuple(path[:end]))
            if line is not None and self.located.lines.get(("pipelines", name) + tuple(path[:end])) is None:
                return line
        return self.located.line_of(("pipelines", name) + tuple(path))


def load_project(path: str | Path = DEFAULT_FILE) -> ProjectFile:
    """Read and structurally check the file (top-level keys, pipeline names)."""
    path = Path(path)
    shown = str(path)
    if not path.is_file():
        raise ConfigError([ConfigIssue(f"file not found (run from the project folder or pass --file)", file=shown)])
    located = load_located(path.read_text(encoding="utf-8"), shown)
    data = located.data
    issues = []
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue("expected a mapping with `defaults:` and `pipelines:`", file=shown, line=1)])
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            issues.append(ConfigIssue(f"unknown top-level key '{key}'{did_you_mean(key, TOP_LEVEL_KEYS)} "
                                      f"(expected: {', '.join(TOP_LEVEL_KEYS)})", (key,), shown, located.lines.get((key,))))
    for key in TOP_LEVEL_KEYS:
        if key in data and data[key] is not None and not isinstance(data[key], dict):
            issues.append(ConfigIssue(f"expected a mapping, got {type(data[key]).__name__}", (key,), shown,
                                      located.lines.get((key,))))
    if not data.get("pipelines"):
        issues.append(ConfigIssue("no pipelines declared (expected a `pipelines:` mapping of name -> pipeline)",
                                  ("pipelines",), shown, located.lines.get(("pipelines",), 1)))
    if issues:
        raise ConfigError(issues)
    return ProjectFile(path, located)


def resolve(project: ProjectFile, name: str, overrides: Sequence[Override] = ()) -> PipelineSpec:
    """The validated spec of pipeline `name` with `overrides` applied; raises ConfigError listing every problem."""
    if name not in project.pipelines:
        raise ConfigError([ConfigIssue(f"unknown pipeline '{name}'{did_you_mean(name, project.names)} "
                                       f"(pipelines: {', '.join(project.names)})", file=str(project.path))])
    raw = project.raw_pipeline(name)
    if not isinstance(raw, dict):
        raise ConfigError([_issue(project, name, (), "expected a mapping of sections (data, model, train, ...)")])
    origins: dict[tuple, str] = {}
    issues: list[ConfigIssue] = []
    for override in overrides:
        try:
            set_path(raw, override.path, override.value)
            origins[override.path] = f"--set {override.text}"
        except (KeyError, IndexError, TypeError) as exc:
            issues.append(ConfigIssue(f"cannot set this key: {exc}", (), origin=f"--set {override.text}"))
    if "name" in raw:
        issues.append(_issue(project, name, ("name",), "`name` is the pipeline's key under `pipelines:`; remove it"))
    raw["name"] = name
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        issues += [_pydantic_issue(project, name, raw, origins, err) for err in exc.errors()]
        raise ConfigError(issues) from None
    issues += [_issue(project, name, path, message, origins) for path, message in spec.preflight(project.base_dir)]
    if spec.fusion is not None and not issues:  # members: other pipelines (their `set:` as --set) or model URIs
        from tasks.fusion.checks import check_fusion

        issues += [_issue(project, name, path, message, origins) for path, message in check_fusion(
            spec, project.names, project.raw_pipeline, lambda member, sets: resolve(project, member, parse_overrides(sets)))]
    if spec.sweep is not None and not issues:  # every trial: this pipeline with the trial's values as --set
        from tasks.sweep.trials import resolve_trials

        base = list(overrides) + [Override("sweep", None, "sweep=null")] + _pinned_split(spec)
        issues += [_issue(project, name, path, message, origins) for path, message in resolve_trials(
            spec, lambda values: resolve(project, name, base + [
                Override(k, v, f"{k}={json.dumps(v)}") for k, v in values.items()]))]
    if issues:
        raise ConfigError(issues)
    return spec


def _pinned_split(spec: PipelineSpec) -> list[Override]:
    """Every trial of a sweep splits the data alike: `data.split.seed` is pinned to the pipeline's seed (as for a
    fusion's members) unless the pipeline sets it or the sweep varies it, so sweeping `seed` varies only the
    initialisation and shuffling, and all trials are ranked on one validation split."""
    split = getattr(spec.data, "split", None)
    swept = [k for k in spec.sweep.parameters if k in ("data", "data.split", "data.split.seed")]
    if split is None or getattr(split, "seed", None) is not None or swept or not hasattr(split, "seed"):
        return []
    return [Override("data.split.seed", spec.seed, f"data.split.seed={spec.seed}")]


def resolve_all(project: ProjectFile) -> dict[str, PipelineSpec]:
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


def deep_merge(base: dict, top: dict) -> dict:
    """`top` merged over `base`; nested mappings merge, anything else (lists too) is replaced."""
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def set_path(data: Any, path: Sequence[Any], value: Any) -> None:
    """Set `data[path...] = value`, creating mappings on the way; list items by index."""
    for i, part in enumerate(path[:-1]):
        if isinstance(data, list):
            data = data[int(part)]
            continue
        if not isinstance(data, dict):
            raise TypeError(f"'{'.'.join(map(str, path[:i]))}' is not a mapping")
        nxt = data.get(part)
        if nxt is None:
            nxt = data[part] = {}
        data = nxt
    last = path[-1]
    if isinstance(data, list):
        data[int(last)] = value
    elif isinstance(data, dict):
        data[last] = value
    else:
        raise TypeError(f"'{'.'.join(map(str, path[:-1]))}' is not a mapping")


# --- pydantic errors -> located issues -------------------------------------------------------------------------

def _issue(project: ProjectFile, name: str, path: Sequence[Any], message: str,
           origins: Mapping[tuple, str] | None = None) -> ConfigIssue:
    origin = _origin_of(origins or {}, tuple(path))
    full = ("pipelines", name) + tuple(path)
    return ConfigIssue(message, full, str(project.path), None if origin else project.line_of(name, path), origin)


def _origin_of(origins: Mapping[tuple, str], path: tuple) -> str | None:
    for end in range(len(path), 0, -1):
        if path[:end] in origins:
            return origins[path[:end]]
    return None


def _yaml_path(raw: Any, loc: Sequence[Any]) -> tuple[Any, ...]:
    """Drop the parts of a pydantic `loc` that are not keys of the data (discriminator tags, validator names)."""
    path, node = [], raw
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not last:
            continue  # a union tag such as 'mlp' in ('model', 'mlp', 'hidden')
        elif isinstance(part, str) and (":" in part or "[" in part):
            continue  # a function-validator's name
        else:
            path.append(part)
            node = None
    return tuple(path)


def _pydantic_issue(project: ProjectFile, name: str, raw: dict, origins: Mapping[tuple, str], err: Mapping[str, Any]) -> ConfigIssue:
    loc = tuple(err["loc"])
    path = _yaml_path(raw, loc)
    kind, ctx = err["type"], err.get("ctx") or {}
    got = err.get("input")
    if kind == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        key = path[-1] if path else loc[-1]
        hint = did_you_mean(str(key), valid)
        message = f"unknown key '{key}'{hint}" + (f" (valid keys: {', '.join(valid)})" if valid else "")
    elif kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        message = (f"unknown {ctx.get('discriminator', 'type').strip(chr(39))} '{ctx.get('tag')}'"
                   f"{did_you_mean(str(ctx.get('tag')), tags)} (expected one of: {', '.join(tags)})")
        disc = str(ctx.get("discriminator", "")).strip("'")
        if isinstance(raw_at(raw, path), dict) and disc in raw_at(raw, path):
            path = path + (disc,)  # point at the `type:` line itself
    elif kind == "union_tag_not_found":
        message = f"missing key {ctx.get('discriminator')} (it selects the kind of this section)"
    elif kind == "missing":
        message = "missing required key"
    elif kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        options = [o.strip(" '") for o in re.split(r",| or ", expected) if o.strip(" '")]
        message = f"expected one of {expected}, got {got!r}{did_you_mean(str(got), options)}"
    else:
        message = err["msg"].removeprefix("Value error, ")
        if got is not None and not isinstance(got, (dict, list)) and kind not in ("value_error", "assertion_error"):
            message += f" (got {got!r})"
    if path[:1] == ("name",):  # model-level validators report at the pipeline itself
        path = ()
    return _issue(project, name, path, message, origins)


def raw_at(raw: Any, path: Sequence[Any]) -> Any:
    for part in path:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return None
    return raw


def _valid_keys(loc: Sequence[Any]) -> list[str]:
    """Field names of the config class at `loc` in PipelineSpec (following union tags), for suggestions."""
    current: Any = PipelineSpec
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    models = _models_in(current)
    return sorted(f for f in models[0].model_fields if f != "name" or models[0] is not PipelineSpec) if len(models) == 1 else []


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    origin = get_origin(tp)
    if origin is Union or str(origin) in ("typing.Annotated", "<class 'typing.Annotated'>") or _is_annotated(tp):
        args = get_args(tp)
        if _is_annotated(tp):
            return _models_in(args[0])
        return [m for a in args for m in _models_in(a)]
    return []


def _is_annotated(tp: Any) -> bool:
    return hasattr(tp, "__metadata__")


def _step(tp: Any, part: Any) -> Any:
    if _is_annotated(tp):
        return _step(get_args(tp)[0], part)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field else None
    origin = get_origin(tp)
    if origin is Union:
        for candidate in get_args(tp):
            if any(getattr(meta, "tag", None) == part for meta in getattr(candidate, "__metadata__", ())):
                return get_args(candidate)[0]  # a callable-discriminator Tag, e.g. 'cron schedule'
            for model in _models_in(candidate):
                for fname in ("source", "type", "backend", "name", "method"):
                    f = model.model_fields.get(fname)
                    if f is not None and get_origin(f.annotation) is not None and part in get_args(f.annotation):
                        return model
        for candidate in get_args(tp):
            found = _step(candidate, part)
            if found is not None:
                return found
        return None
    if origin in (list, tuple) and isinstance(part, int):
        return get_args(tp)[0]
    if origin is dict:
        return get_args(tp)[1]
    return None
