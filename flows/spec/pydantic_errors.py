"""Pydantic validation errors -> located `ConfigIssue`s: the file, line and key path the user wrote, what was expected,
and "did you mean" for a misspelt key or kind (the valid keys are read off the config classes)."""
from __future__ import annotations

import re
from typing import Annotated, Any, Mapping, Sequence, Union, get_args, get_origin

from pydantic import BaseModel

from flows.spec.project import ProjectFile
from tasks.errors import ConfigIssue, did_you_mean
from tasks.pipeline.spec import PipelineSpec
from tasks.registry import registry_named, registry_of


def located_issue(project: ProjectFile, name: str, path: Sequence[Any], message: str,
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


def pydantic_issue(project: ProjectFile, name: str, raw: dict, origins: Mapping[tuple, str], err: Mapping[str, Any]) -> ConfigIssue:
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
        disc = str(ctx.get("discriminator", "")).strip("'")
        registry = registry_named(disc, tags)
        what = registry.kind if registry else disc or "type"  # "model type", "preprocess step", "data source"
        message = (f"unknown {what} '{ctx.get('tag')}'{did_you_mean(str(ctx.get('tag')), tags)} "
                   f"(expected one of: {', '.join(tags)})")
        if isinstance(raw_at(raw, path), dict) and disc in raw_at(raw, path):
            path = path + (disc,)  # point at the `type:` line itself
    elif kind == "union_tag_not_found":
        message = f"missing key {ctx.get('discriminator')} (it selects the kind of this section)"
    elif kind == "missing":
        message = "missing required key"
    elif kind == "bool_for_number":  # StrictModel's check runs on the section: point at its key
        path = _yaml_path(raw, loc + (ctx["key"],))
        message = f"expected a number, got `{ctx['value']}` (a boolean)"
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
    return located_issue(project, name, path, message, origins)


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
    registry = registry_of(tp)
    if registry is not None:
        return registry.classes()
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
    registry = registry_of(tp)
    if registry is not None:  # a registry's section: pydantic's loc names the registered kind, e.g. 'mlp'
        if isinstance(part, str) and part in registry.names():
            return registry.get(part)
        return _step(registry.union(), part)
    if _is_annotated(tp):
        return _step(get_args(tp)[0], part)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        # pydantic keeps a field's own `Annotated[...]` extras in `metadata` (a registry's marker among them)
        return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
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
