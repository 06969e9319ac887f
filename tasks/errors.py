"""Configuration errors that point at the place to fix: file, line, key path, what was expected."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable, Sequence


def format_path(path: Sequence[str | int]) -> str:
    """``('pipelines', 'a', 'preprocess', 0)`` -> ``pipelines.a.preprocess[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ``; did you mean 'x'?`` suffix for the closest candidate, or an empty string."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean '{matches[0]}'?" if matches else ""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the configuration, located where the user can find it."""

    message: str
    path: tuple[str | int, ...] = ()
    file: str | None = None
    line: int | None = None
    origin: str | None = None  # e.g. "--set model.hidden=[]" when the value came from an override

    def __str__(self) -> str:
        where = self.origin or (f"{self.file}:{self.line}" if self.line else (self.file or ""))
        head = f"{where}: " if where else ""
        key = f"{format_path(self.path)}: " if self.path else ""
        return f"{head}{key}{self.message}"


@dataclass
class ConfigError(Exception):
    """All configuration problems found in one pass; the CLI prints them and exits 2."""

    issues: list[ConfigIssue] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)

    @classmethod
    def single(cls, message: str, path: Sequence[str | int] = (), **where: object) -> "ConfigError":
        return cls([ConfigIssue(message, tuple(path), **where)])  # type: ignore[arg-type]
