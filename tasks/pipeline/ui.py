"""Which values of a pipeline are tunable from a form (the Prefect Custom run form): scalars, enums and lists of
scalars of its model, trainer, evaluation, split and seed, typed and bounded from the spec's own pydantic classes.

`ui: {fields: [train.epochs, train.optimizer.lr]}` in a pipeline picks the fields (or groups) instead."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional

from pydantic import BaseModel, Field

from tasks.errors import did_you_mean
from tasks.registry import StrictModel

#: the sections searched, in form order; `data.split` is the only part of `data` that is a hyperparameter
SECTIONS: tuple[tuple[str, ...], ...] = (("seed",), ("model",), ("train",), ("data", "split"), ("evaluate",))
#: fields that say where or how often a run works, not what it learns: left out unless `ui.fields` names them
NOT_HYPERPARAMETERS = frozenset({"device", "distributed", "checkpoint_every", "checkpoint_seconds", "eval_batch_size",
                                 "pretrained", "tokenizer", "revision", "config"})
_SCALARS = frozenset({"integer", "number", "boolean", "string"})
_KEEP = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
         "maxLength", "pattern", "items", "minItems", "maxItems", "description")


class UiConfig(StrictModel):
    """How the pipeline appears in the Prefect UI."""

    fields: Optional[list[str]] = Field(None, description="the dotted keys (or groups, e.g. `train.optimizer`) shown "
                                        "as typed fields in the Custom run form; default: the model, train, "
                                        "evaluate, data.split and seed values")


@dataclass(frozen=True)
class FormField:
    """One tunable value: its key path, its JSON schema (from the spec class), and its value in the pipeline."""

    path: tuple[str, ...]
    schema: dict[str, Any]
    value: Any

    @property
    def key(self) -> str:
        return ".".join(self.path)


def _unwrap_optional(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """`anyOf: [X, null]` -> (X, True); anything else unchanged."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        real = [o for o in options if o.get("type") != "null"]
        if len(real) == 1 and len(options) == 2:
            merged = {**{k: v for k, v in schema.items() if k != "anyOf"}, **real[0]}
            return merged, True
    return schema, False


def leaf_schema(schema: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The form schema of a scalar, an enum or a list of scalars; None for anything else (objects, tuples, unions,
    a discriminator `const`)."""
    inner, _ = _unwrap_optional(schema)
    if "const" in inner or "$ref" in inner or "prefixItems" in inner or "anyOf" in inner:
        return None
    kind = inner.get("type")
    if kind == "array":
        items = inner.get("items") or {}
        if items.get("type") not in _SCALARS and "enum" not in items:
            return None
    elif kind not in _SCALARS and "enum" not in inner:
        return None
    leaf = {k: inner[k] for k in _KEEP if k in inner}
    if "items" in leaf:
        leaf["items"] = _integer_bounds(dict(leaf["items"]))
    return _integer_bounds(leaf)


def _integer_bounds(schema: dict[str, Any]) -> dict[str, Any]:
    """An integer's `gt=0` as `minimum: 1` (and `lt=n` as `maximum: n-1`): what a form shows and checks simply."""
    if schema.get("type") != "integer":
        return schema
    if isinstance(schema.get("exclusiveMinimum"), int):
        schema["minimum"] = max(schema.pop("exclusiveMinimum") + 1, schema.get("minimum", float("-inf")))
    if isinstance(schema.get("exclusiveMaximum"), int):
        schema["maximum"] = min(schema.pop("exclusiveMaximum") - 1, schema.get("maximum", float("inf")))
    return schema


def _section_fields(model: BaseModel, path: tuple[str, ...]) -> Iterator[FormField]:
    """Every scalar, enum and scalar list of `model` and of the config objects inside it."""
    properties = type(model).model_json_schema().get("properties", {})
    for name, schema in properties.items():
        value = getattr(model, name, None)
        if isinstance(value, BaseModel):
            yield from _section_fields(value, path + (name,))
            continue
        leaf = leaf_schema(schema)
        if leaf is None:
            continue
        if value is None:  # shown only when named: keep `null` allowed so the field may stay empty
            leaf = {"anyOf": [leaf, {"type": "null"}], **({"description": leaf["description"]}
                                                          if "description" in leaf else {})}
            leaf["anyOf"][0].pop("description", None)
        yield FormField(path + (name,), leaf, _json_value(value))


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


def all_fields(spec: Any) -> list[FormField]:
    """Every field `ui.fields` may name, in form order."""
    found: list[FormField] = []
    for section in SECTIONS:
        value: Any = spec
        for part in section:
            value = getattr(value, part, None)
        if isinstance(value, BaseModel):
            found += list(_section_fields(value, section))
        elif value is not None and len(section) == 1:  # a top-level scalar: `seed`
            schema = type(spec).model_json_schema().get("properties", {}).get(section[0], {})
            leaf = leaf_schema(schema)
            if leaf is not None:
                found.append(FormField(section, leaf, value))
    return found


def form_fields(spec: Any) -> list[FormField]:
    """The fields of the form: those `ui.fields` names (in its order), else the sensible default set (no None
    values, none of NOT_HYPERPARAMETERS). Unknown names raise ValueError (see `ui_issues`)."""
    fields = all_fields(spec)
    ui = getattr(spec, "ui", None)
    if ui is None or ui.fields is None:
        return [f for f in fields if f.value is not None and not NOT_HYPERPARAMETERS.intersection(f.path)]
    chosen: dict[str, FormField] = {}
    for name in ui.fields:
        matching = [f for f in fields if f.key == name or f.key.startswith(name + ".")]
        if not matching:
            raise ValueError(unknown_field_message(name, fields))
        chosen.update((f.key, f) for f in matching)
    return list(chosen.values())


def unknown_field_message(name: str, fields: list[FormField]) -> str:
    keys = [f.key for f in fields]
    groups = sorted({".".join(f.path[:i]) for f in fields for i in range(1, len(f.path))})
    hint = did_you_mean(name, keys + groups) or did_you_mean(name.rsplit(".", 1)[-1], keys)
    return (f"'{name}' is not a tunable field of this pipeline{hint} (fields: "
            f"{', '.join(keys[:12])}{', ...' if len(keys) > 12 else ''})")


def ui_issues(spec: Any) -> list[tuple[tuple, str]]:
    """`ui.fields` entries that name no tunable value, located at their list index."""
    ui = getattr(spec, "ui", None)
    if ui is None or not ui.fields:
        return []
    fields = all_fields(spec)
    keys = [f.key for f in fields]
    return [(("ui", "fields", i), unknown_field_message(name, fields)) for i, name in enumerate(ui.fields)
            if not any(k == name or k.startswith(name + ".") for k in keys)]
