"""`--set dotted.key=value` overrides (and a deployment's `overrides` parameter): parse them and apply them."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import yaml

from flows.spec.yaml_lines import load_located
from tasks.errors import ConfigError, ConfigIssue

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
    return Override(key, yaml_value(raw, text), text)


def yaml_value(raw: str, text: str) -> Any:
    """The YAML value of an override, read with the limits of pipelines.yaml (flows/spec/yaml_lines.py)."""
    if not raw.strip():
        return ""
    try:
        return load_located(raw, "--set").data
    except ConfigError as err:
        raise ConfigError([ConfigIssue(f"the value is not valid YAML: {issue.message.removeprefix('invalid YAML: ')}"
                                       if issue.message.startswith("invalid YAML") else f"in the value: {issue.message}",
                                       origin=f"--set {text if len(text) <= 80 else text[:77] + '...'}")
                           for issue in err.issues]) from None


def flatten_dotted(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"train": {"epochs": 3}}` -> `{"train.epochs": 3}`: a nested mapping is merged key by key, as dotted keys
    are (an empty mapping stays a value: `{"standardize": {}}`)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_dotted(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> list[Override]:
    """CLI strings (`k=v`) or a mapping (deployment parameters; nested mappings become dotted keys) -> overrides;
    all bad ones reported together."""
    if not items:
        return []
    if isinstance(items, Mapping):
        items = flatten_dotted(items)
        return [parse_override(f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}")
                if not isinstance(v, str) else Override(k, yaml_value(v, f"{k}={v}"), f"{k}={v}")
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
