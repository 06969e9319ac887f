"""pipelines.yaml as a project: the parsed file with its line map, `defaults:` merged under each pipeline."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from flows.spec.yaml_lines import LocatedYaml, load_located
from tasks.errors import ConfigError, ConfigIssue, did_you_mean

DEFAULT_FILE = "pipelines.yaml"
TOP_LEVEL_KEYS = ("defaults", "pipelines")


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


def deep_merge(base: dict, top: dict) -> dict:
    """`top` merged over `base`; nested mappings merge, anything else (lists too) is replaced."""
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = deep_merge(base[key], value)
        else:
            base[key] = value
    return base
