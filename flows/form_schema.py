"""The typed `hyperparameters` parameter of a pipeline's deployment: a JSON schema grouped as the YAML is (types, bounds
and enums from the spec's pydantic classes, the YAML's values as defaults), and what a submitted form changed."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from flows.spec.overrides import flatten_dotted
from tasks.pipeline.ui import FormField, form_fields

DESCRIPTION = ("the pipeline's values from pipelines.yaml, typed and checked; a changed field becomes an override "
               "(`overrides` wins over it)")


def _leaf(field: FormField) -> dict[str, Any]:
    schema = {**field.schema, "title": field.path[-1], "default": field.value}
    about = field.schema.get("description")
    schema["description"] = f"`{field.key}`" + (f": {about}" if about else "")
    return schema


def hyperparameters_schema(spec: Any) -> dict[str, Any]:
    """The nested object schema of the form fields (`properties.train.properties.epochs`, ...), defaults included."""
    root: dict[str, Any] = {"type": "object", "title": "hyperparameters", "description": DESCRIPTION,
                            "properties": {}, "additionalProperties": False}
    for field in form_fields(spec):
        node = root
        for part in field.path[:-1]:
            node = node["properties"].setdefault(part, {"type": "object", "title": part, "properties": {},
                                                        "additionalProperties": False})
        node["properties"][field.path[-1]] = _leaf(field)
    root["default"] = hyperparameter_defaults(spec)
    return root


def hyperparameter_defaults(spec: Any) -> dict[str, Any]:
    """The form's values as the YAML gives them, nested as in the schema."""
    values: dict[str, Any] = {}
    for field in form_fields(spec):
        node = values
        for part in field.path[:-1]:
            node = node.setdefault(part, {})
        node[field.path[-1]] = field.value
    return values


def _current(data: Any, key: str) -> tuple[bool, Any]:
    for part in key.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return False, None
    return True, data


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def changed_values(spec: Any, hyperparameters: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """The dotted keys whose submitted value differs from the pipeline's (unchanged fields change nothing)."""
    if not hyperparameters:
        return {}
    config = spec.model_dump(mode="json")
    changed = {}
    for key, value in flatten_dotted(hyperparameters).items():
        found, current = _current(config, key)
        if not found or not _same(current, value):
            changed[key] = value
    return changed


def merged_overrides(spec: Any, hyperparameters: Optional[Mapping[str, Any]],
                     overrides: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """The form's changes, then `overrides` (dotted, or nested and flattened), which wins on the same key."""
    return {**changed_values(spec, hyperparameters), **flatten_dotted(overrides or {})}
