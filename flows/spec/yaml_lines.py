"""Load YAML into plain Python data plus a map from key path to line number (for precise errors).

Hostile input is bounded before anything is built: nesting deeper than `MAX_DEPTH` is refused while the file is
parsed (before Python's recursion limit), and a document that expands to more than `MAX_NODES` values once its
aliases are followed ("billion laughs"), or whose aliases form a cycle, is refused by measuring the parsed node
graph, in which an alias is the node it points at, so measuring costs as much as the file is long."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from tasks.errors import ConfigError, ConfigIssue

Path = tuple[Any, ...]

MAX_DEPTH = 100  #: collections nested inside one another (a value counts as one level)
MAX_NODES = 1_000_000  #: values in the whole document once every alias is expanded


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


class _Refused(Exception):
    """A document refused for its shape (too deep, too large, recursive), with the line to point at."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message, self.line = message, line


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader whose composer refuses to nest deeper than `max_depth` (its composer is recursive)."""

    def __init__(self, text: str, max_depth: int) -> None:
        super().__init__(text)
        self._depth, self._max_depth = 0, max_depth

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self._depth >= self._max_depth:
            raise _Refused(f"nested more than {self._max_depth} levels deep (the limit is {self._max_depth})",
                           self.peek_event().start_mark.line + 1)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_located(text: str, file: str = "<string>", *, max_depth: int | None = None,
                 max_nodes: int | None = None) -> LocatedYaml:
    """Parse ``text``; duplicate keys, syntax errors and refused shapes raise ConfigError with their line (the limits
    default to `MAX_DEPTH` and `MAX_NODES`)."""
    max_depth = MAX_DEPTH if max_depth is None else max_depth
    max_nodes = MAX_NODES if max_nodes is None else max_nodes

    def refuse(message: str, line: int | None) -> ConfigError:
        return ConfigError([ConfigIssue(message, (), file, line)])

    loader = None
    issues: list[ConfigIssue] = []
    lines: dict[Path, int] = {}
    try:
        loader = _BoundedLoader(text, max_depth)  # checks every character first
        node = loader.get_single_node()
        if node is not None:
            _measure(node, max_depth, max_nodes)
        data = _construct(loader, node, (), lines, issues, file) if node is not None else None
    except _Refused as exc:
        raise refuse(exc.message, exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(filter(None, [exc.context, exc.problem]))
        raise refuse(f"invalid YAML: {problem}", mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as exc:  # a NUL or another control character
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise refuse(f"invalid YAML: character #x{exc.character:04x} in column {column} is not allowed (control "
                     "characters such as NUL cannot appear in YAML)", line) from None
    except yaml.YAMLError as exc:
        raise refuse(f"invalid YAML: {exc}".splitlines()[0], None) from None
    except RecursionError:  # a guard: the limits above keep every recursion well within Python's
        raise refuse(f"nested too deeply (the limit is {max_depth} levels)", None) from None
    finally:
        if loader is not None:
            loader.dispose()
    if issues:
        raise ConfigError(issues)
    return LocatedYaml(data, lines, file)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _measure(root: yaml.Node, max_depth: int, max_nodes: int) -> None:
    """Refuse a node graph that, with its aliases expanded, holds more than `max_nodes` values, nests deeper than
    `max_depth`, or contains itself. Iterative, and each distinct node is measured once."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            open_nodes.discard(key)
            line = node.start_mark.line + 1
            if size[key] > max_nodes:
                raise _Refused(f"the document expands to more than {max_nodes:,} values once its aliases are "
                               f"followed (the limit is {max_nodes:,}; each `*alias` repeats all it points at)", line)
            if depth[key] > max_depth:
                raise _Refused(f"nested more than {max_depth} levels deep once its aliases are followed "
                               f"(the limit is {max_depth})", line)
            continue
        if key in size:
            continue
        if key in open_nodes:  # reached again from inside itself: `&a [*a]`
            raise _Refused("an alias refers to a collection that contains it (a recursive structure)",
                           node.start_mark.line + 1)
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node))


_FAILED = object()


def _scalar(loader: yaml.SafeLoader, node: yaml.Node, path: Path, issues: list[ConfigIssue], file: str) -> Any:
    """A scalar's value; one that YAML reads but Python cannot build (`2020-13-45`, a 5,000-digit int) is an issue."""
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, OverflowError, TypeError) as exc:
        shown = node.value if len(str(node.value)) <= 40 else f"{str(node.value)[:40]}..."
        reason = str(exc).splitlines()[0].split("; use ")[0]  # not Python's hint to raise its int limit
        issues.append(ConfigIssue(f"invalid value '{shown}': {reason}", path, file,
                                  node.start_mark.line + 1))
        return _FAILED


_MERGE = "tag:yaml.org,2002:merge"
_PLAIN = {yaml.MappingNode: "tag:yaml.org,2002:map", yaml.SequenceNode: "tag:yaml.org,2002:seq"}
Pair = tuple[yaml.Node, yaml.Node]


def _pairs(node: yaml.MappingNode, issues: list[ConfigIssue], file: str) -> tuple[list[Pair], list[Pair]]:
    """A mapping's own key/value pairs, and those `<<:` merges into it, first the one that wins (its own keys win
    over merged ones, an earlier merge over a later one), as SafeConstructor has it; the node is left unchanged, for
    an alias may show it again."""
    own: list[Pair] = []
    merged: list[Pair] = []
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE:
            own.append((key_node, value_node))
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                issues.append(ConfigIssue("`<<:` merges a mapping or a list of mappings (e.g. `<<: *defaults`)",
                                          (), file, source.start_mark.line + 1))
                continue
            source_own, source_merged = _pairs(source, issues, file)
            merged += source_own + source_merged
    return own, merged


def _construct(loader: yaml.SafeLoader, node: yaml.Node, path: Path, lines: dict[Path, int],
               issues: list[ConfigIssue], file: str) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag != _PLAIN[type(node)]:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        issues.append(ConfigIssue(f"unsupported YAML tag '{tag}' (pipelines.yaml holds plain mappings, lists, "
                                  "text and numbers)", path, file, node.start_mark.line + 1))
        return None
    if isinstance(node, yaml.MappingNode):
        own, merged = _pairs(node, issues, file)
        result: dict[Any, Any] = {}
        for index, (key_node, value_node) in enumerate(own + merged):
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "mapping" if isinstance(key_node, yaml.MappingNode) else "list"
                issues.append(ConfigIssue(f"a key must be a plain value such as a name, not a {kind}", path, file,
                                          key_node.start_mark.line + 1))
                continue
            key = _scalar(loader, key_node, path, issues, file)
            if key is _FAILED:
                continue
            if isinstance(key, bool):  # `on:` (a trigger's key), `yes:`: a key is a name as written, never YAML 1.1's bool
                key = key_node.value
            if key in result:
                if index < len(own):  # a merged key that the mapping sets itself is overridden, not duplicated
                    first = lines.get(path + (key,))
                    issues.append(ConfigIssue(f"duplicate key '{key}' (first defined on line {first})",
                                              path + (key,), file, key_node.start_mark.line + 1))
                continue
            lines[path + (key,)] = key_node.start_mark.line + 1
            result[key] = _construct(loader, value_node, path + (key,), lines, issues, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, path + (i,), lines, issues, file) for i, item in enumerate(node.value)]
    value = _scalar(loader, node, path, issues, file)
    return None if value is _FAILED else value
