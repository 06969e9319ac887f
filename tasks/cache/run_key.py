"""The key of a whole pipeline run: what its outputs (metrics, plots, model) depend on, without running a step.

Same parts as a step's key (tasks/cache/policy.py), so a miss can say what changed: `config` (the resolved config
that shapes the result: not description, tags, schedule, tracking, registry or runner), `data` (the content of a
data file; hub and scikit-learn datasets count by their config and the library versions), `code` (every project
module the pipeline's body runs, and the module a `type: custom` model names) and `versions` (Python and the ML
libraries). Computing it imports nothing heavy: an unchanged rerun is decided before torch is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from tasks.cache.fingerprint import (classes_in, data_digest, digest, file_digest, flat_config, fingerprint_code,
                                     fingerprint_versions, module_closure)

#: top-level config keys that do not change what a run computes
UNKEYED_SECTIONS = ("description", "tags", "schedule", "tracking", "registry", "runner")


@dataclass(frozen=True)
class RunKey:
    """A run's key and the parts it was computed from (part -> name -> digest or value)."""

    value: str
    parts: Mapping[str, Mapping[str, str]]


def configs_in(value: Any, depth: int = 0) -> Iterable[Any]:
    """`value` and every config object nested in it (pydantic models, lists and mappings of them)."""
    if depth > 6 or value is None or isinstance(value, (str, bytes, int, float, bool, Path)):
        return
    yield value
    items: Iterable[Any] = ()
    if isinstance(value, Mapping):
        items = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    elif hasattr(type(value), "model_fields"):
        items = [getattr(value, name, None) for name in type(value).model_fields]
    for item in items:
        yield from configs_in(item, depth + 1)


def code_modules(spec: Any) -> set[str]:
    """Modules that configs in `spec` name as code to run (`CustomModelConfig.code_modules()`)."""
    return {m for config in configs_in(spec) if callable(getattr(config, "code_modules", None))
            for m in config.code_modules()}


def content_digests(spec: Any, base_dir: Path) -> dict[str, str]:
    """Content digests of the data file and of the local folders configs load from (`content_paths(base_dir)`)."""
    found: dict[str, str] = {}
    data_file = data_digest(spec.data, base_dir) if getattr(spec, "data", None) is not None else None
    if data_file:
        found["data.file"] = data_file
    for config in configs_in(spec):
        if callable(getattr(config, "content_paths", None)):
            for path in config.content_paths(base_dir):
                found[str(path)] = file_digest(Path(path))
    return found


def run_key(spec: Any, body: Callable[..., Any], base_dir: Path) -> RunKey:
    """The key of running `spec` with `body` (a function) from project folder `base_dir`: the code is the body's
    module and everything it imports, the modules of the config classes in `spec` (the trainer, the model, ...)
    and the modules configs name, each with its imports, transitively."""
    config = spec.model_dump(mode="json", exclude_none=True)
    for section in UNKEYED_SECTIONS:
        config.pop(section, None)
    code = fingerprint_code(body, {})
    code.update(module_closure({body.__module__} | {cls.__module__ for cls in classes_in(spec)} | code_modules(spec)))
    parts = {"config": flat_config(config, "pipeline"),
             "data": content_digests(spec, base_dir),
             "code": dict(sorted(code.items())),
             "versions": dict(fingerprint_versions())}
    value = digest(repr(sorted((name, sorted(part.items())) for name, part in parts.items())), 32)
    return RunKey(value, parts)
