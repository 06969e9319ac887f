"""Load YAML into plain Python data plus a map from key path to line number (for precise errors)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from tasks.errors import ConfigError, ConfigIssue

Path = tuple[Any, ...]


@dataclass
class LocatedYaml:
    """A parsed YAML document and where each key path starts (1-based lines)."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    file: str = "<string>"

    def line_of(self, path: Path) -> int | None:
        """The line of ``path``, or of its longest prefix that the file contains."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def load_located(text: str, file: str = "<string>") -> LocatedYaml:
    """Parse ``text``; duplicate keys and syntax errors raise ConfigError with their line."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        issues: list[ConfigIssue] = []
        lines: dict[Path, int] = {}
        data = _construct(loader, node, (), lines, issues, file) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(filter(None, [exc.context, exc.problem]))
        raise ConfigError([ConfigIssue(f"invalid YAML: {problem}", (), file, line)]) from None
    finally:
        loader.dispose()
    if issues:
        raise ConfigError(issues)
    return LocatedYaml(data, lines, file)


def _construct(loader: yaml.SafeLoader, node: yaml.Node, path: Path, lines: dict[Path, int],
               issues: list[ConfigIssue], file: str) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merges like SafeConstructor does
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in result:
                first = lines.get(path + (key,))
                issues.append(ConfigIssue(f"duplicate key '{key}' (first defined on line {first})",
                                          path + (key,), file, key_node.start_mark.line + 1))
                continue
            lines[path + (key,)] = key_node.start_mark.line + 1
            result[key] = _construct(loader, value_node, path + (key,), lines, issues, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, path + (i,), lines, issues, file) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
