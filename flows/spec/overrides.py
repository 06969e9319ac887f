"""`--set dotted.key=value` overrides (and a deployment's `overrides` parameter): parse them and apply them."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import yaml

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
