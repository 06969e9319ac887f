"""pipelines.yaml as a project: the parsed file with its line map, `defaults:` merged under each pipeline."""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from flows.spec.yaml_lines import LocatedYaml, load_located
from tasks.errors import ConfigError, ConfigIssue, did_you_mean

DEFAULT_FILE = "pipelines.yaml"
TOP_LEVEL_KEYS = ("defaults", "pipelines")
MAX_NAME_LENGTH = 100  #: a pipeline's name becomes part of log file, MLflow experiment and deployment names
NAME_RULE = (f"a pipeline name is 1-{MAX_NAME_LENGTH} characters: letters A-Z and a-z, digits, '-', '_' and '.', "
             "not starting with '.'")
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


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
        body = self.pipelines[name]
        if body is not None and not isinstance(body, dict):
            return copy.deepcopy(body)  # not a pipeline: `resolve` reports it, located
        return deep_merge(copy.deepcopy(defaults), copy.deepcopy(body or {}))

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
    located = load_located(read_text(path, shown), shown)
    data = located.data
    issues = []
    if data is None:
        raise ConfigError([ConfigIssue("the file holds no YAML document (it is empty or only comments); expected a "
                                       "`pipelines:` mapping of name -> pipeline", file=shown, line=1)])
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
    elif isinstance(data["pipelines"], dict):
        issues += [ConfigIssue(problem, ("pipelines",), shown, located.lines.get(("pipelines", name)))
                   for name in data["pipelines"] if (problem := name_problem(name))]
    if issues:
        raise ConfigError(issues)
    return ProjectFile(path, located)


def read_text(path: Path, shown: str) -> str:
    """The file's text; a folder, an unreadable file or bytes that are not UTF-8 raise a located ConfigError."""
    def fail(message: str, line: int | None = None) -> ConfigError:
        return ConfigError([ConfigIssue(message, file=shown, line=line)])

    if path.is_dir():
        raise fail("is a folder, not a file (pass the pipelines YAML file with --file)")
    if not path.is_file():
        what = "not a regular file" if path.exists() else "file not found"
        raise fail(f"{what} (run from the project folder or pass --file)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read the file: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise fail(f"not valid UTF-8: byte 0x{raw[exc.start]:02x} in column {column} (save the file as UTF-8)",
                   line) from None


def name_problem(name: Any) -> str | None:
    """Why `name` cannot name a pipeline, or None when it can (see `NAME_RULE`)."""
    if not isinstance(name, str):
        return f"pipeline name {name!r} is not text ({NAME_RULE}; put a number in quotes)"
    if len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name):
        return None
    shown = repr(name) if len(name) <= 40 else f"{name[:40]!r}... ({len(name)} characters)"
    return f"invalid pipeline name {shown}: {NAME_RULE}"


def deep_merge(base: dict, top: dict) -> dict:
    """`top` merged over `base`; nested mappings merge, anything else (lists too) is replaced."""
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = deep_merge(base[key], value)
        else:
            base[key] = value
    return base
