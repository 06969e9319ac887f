"""Fingerprints of what a step's result depends on: its config, its input data, its code and library versions.

Each `fingerprint_*` returns a flat mapping (name -> short digest or value) so that a cache miss can say exactly
what changed. Code is the source of every *project* module the step uses (its own function, what that function
imports or references, the modules of the classes it receives, and their imports, transitively); installed
packages and the standard library count through their versions instead.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import inspect
import json
import os
import sys
import sysconfig
import textwrap
import types
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

#: packages whose versions are part of every step's key (a different torch may train differently)
VERSIONED_PACKAGES = ("torch", "transformers", "numpy", "scikit-learn", "pandas", "datasets")
_MAX_SHOWN = 120  # characters of a config value kept for "what changed" messages


def digest(data: bytes | str, size: int = 16) -> str:
    """Short sha256 hex digest."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:size]


# ---------------------------------------------------------------- versions

@lru_cache(maxsize=1)
def fingerprint_versions() -> dict[str, str]:
    """Python and the versions of the ML libraries (installed or not)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    return found


# ---------------------------------------------------------------- code

@lru_cache(maxsize=1)
def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= {p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))}
    return tuple(sorted(str(Path(r).resolve()) + os.sep for r in roots))


def is_project_file(path: str | Path | None) -> bool:
    """A Python source file of the project (not the standard library, not an installed package)."""
    if not path or not str(path).endswith(".py"):
        return False
    resolved = str(Path(path).resolve())
    return not resolved.startswith(_installed_roots())


@lru_cache(maxsize=1024)
def _top_level_is_project(top: str) -> bool:
    """Whether top-level package/module `top` lives in the project (finding a top-level spec imports nothing)."""
    module = sys.modules.get(top)
    if module is not None:
        paths = list(getattr(module, "__path__", []) or []) or [getattr(module, "__file__", None)]
    else:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return False
        if spec is None:
            return False
        paths = list(spec.submodule_search_locations or []) or [spec.origin]
    return any(p and is_project_file(p if str(p).endswith(".py") else os.path.join(p, "__init__.py")) for p in paths)


def module_file(name: str) -> str | None:
    """Source file of project module `name`, without importing anything from installed packages."""
    if not _top_level_is_project(name.partition(".")[0]):
        return None
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__file__", None)
    parent = name.rpartition(".")[0]
    if parent and parent in sys.modules and not hasattr(sys.modules[parent], "__path__"):
        return None  # `pkg.module.attribute`: not a module
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None
    return spec.origin if spec and spec.has_location else None


@lru_cache(maxsize=512)
def _parse_module(path: str, mtime_ns: int, size: int) -> tuple[str, tuple[tuple[str, int, tuple[str, ...]], ...]]:
    """(source digest, imports) of a file; imports are (module, level, names) of every import statement."""
    source = Path(path).read_bytes()
    return digest(source), tuple(_imports(ast.parse(source)))


def _imports(tree: ast.AST) -> Iterable[tuple[str, int, tuple[str, ...]]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, 0, ()
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", node.level, tuple(a.name for a in node.names)


def _resolve_import(module: str, level: int, names: tuple[str, ...], importer: str, is_package: bool) -> list[str]:
    """Absolute module names an import statement may refer to (`from a import b` may import module `a.b`)."""
    if level:
        base = importer.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (level - 1)]
        module = ".".join(base + ([module] if module else []))
    if not module:
        return []
    return [module] + [f"{module}.{n}" for n in names if n != "*"]


def module_closure(roots: Iterable[str], external: set[str] | None = None) -> dict[str, str]:
    """Digest of the source of each project module reachable from `roots` through imports (any nesting); the
    top-level names of the installed packages they import are added to `external` (the standard library is not)."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if not is_project_file(path):
            top = name.partition(".")[0]
            if external is not None and top and top not in sys.stdlib_module_names and not _top_level_is_project(top):
                external.add(top)
            continue
        stat = os.stat(path)
        source_digest, imports = _parse_module(str(path), stat.st_mtime_ns, stat.st_size)
        found[name] = source_digest
        is_package = Path(path).name == "__init__.py"
        parts = name.split(".")
        stack.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b runs a/__init__.py
        for module, level, names in imports:
            stack.extend(_resolve_import(module, level, names, name, is_package))
    return found


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def function_closure(fn: Callable[..., Any]) -> tuple[dict[str, str], set[str]]:
    """Sources of `fn` and of the same-module functions it calls, and the other modules they use."""
    own: dict[str, str] = {}
    modules: set[str] = set()
    stack = [inspect.unwrap(fn)]
    while stack:
        func = stack.pop()
        label = f"{func.__module__}:{func.__qualname__}"
        if label in own:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(func))
        except (OSError, TypeError):
            own[label] = digest(repr(func.__code__.co_code) + repr(func.__code__.co_consts))
            continue
        own[label] = digest(source)
        tree = ast.parse(source)
        package = func.__module__ if hasattr(sys.modules.get(func.__module__), "__path__") else None
        for module, level, names in _imports(tree):
            modules.update(_resolve_import(module, level, names, package or func.__module__, package is not None))
        for name in _code_names(func.__code__):
            value = func.__globals__.get(name)
            if isinstance(value, types.ModuleType):
                modules.add(value.__name__)
            elif isinstance(value, types.FunctionType) and value.__module__ == func.__module__:
                stack.append(value)
            elif getattr(value, "__module__", None):
                modules.add(value.__module__)
    return own, modules


def classes_in(value: Any, depth: int = 0) -> set[type]:
    """Classes whose code shapes `value`: its type, the types of its fields/items, the modules of a torch model."""
    if depth > 4 or value is None or isinstance(value, (str, bytes, int, float, bool, Path)):
        return set()
    found: set[type] = {type(value)}
    modules = getattr(value, "modules", None)
    if callable(modules) and type(value).__module__ != "builtins" and hasattr(value, "state_dict"):
        try:
            found |= {type(m) for m in modules()}
        except TypeError:
            pass
    items: Iterable[Any] = ()
    if isinstance(value, Mapping):
        items = value.values()
    elif isinstance(value, (list, tuple, set)):
        items = list(value)[:50]
    elif hasattr(type(value), "model_fields"):
        items = [getattr(value, f, None) for f in type(value).model_fields]
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = [getattr(value, f.name) for f in dataclasses.fields(value)]
    for item in items:
        found |= classes_in(item, depth + 1)
    return found


def fingerprint_code(fn: Callable[..., Any], inputs: Mapping[str, Any],
                     external: set[str] | None = None) -> dict[str, str]:
    """module (or module:function) -> source digest, for everything project-side the step runs; the installed
    packages that code imports are added to `external` (top-level import names)."""
    own, modules = function_closure(fn)
    for value in inputs.values():
        modules |= {cls.__module__ for cls in classes_in(value)}
    modules.discard(fn.__module__)  # the task's own module counts function by function (above)
    code = module_closure(modules, external)
    code.update(own)
    return dict(sorted(code.items()))


# ---------------------------------------------------------------- data

def tokenizer_definition(tokenizer: Any) -> Any:
    """What decides a tokenizer's output: its full JSON definition (a fast tokenizer) without the truncation and
    padding state its last call left behind, or its vocabulary (a slow one)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        return {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
    return sorted(tokenizer.get_vocab().items())


def weights_digest(model: Any) -> str:
    """sha256 of a torch model's weights and buffers (names, dtypes, shapes and bytes, in state-dict order)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """Content digest of a file, or of every file of a folder (names and contents)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in files:
        h.update(str(item.relative_to(path) if path.is_dir() else item.name).encode())
        with open(item, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def data_digest(value: Any, base_dir: Path | None = None) -> str | None:
    """Content digest of a data-like input (splits, arrays, tensors, a model's weights, a data file), else None."""
    found = getattr(value, "digest", None)
    if isinstance(found, str) and found:
        return found
    backend = getattr(value, "backend_tokenizer", None)  # a Hugging Face fast tokenizer: vocabulary, rules, options
    if backend is not None and hasattr(backend, "to_str"):
        options = getattr(value, "init_kwargs", {})
        return digest(json.dumps([tokenizer_definition(value), options], sort_keys=True, default=str))
    fingerprint = getattr(value, "_fingerprint", None)  # a datasets.Dataset
    if isinstance(fingerprint, str):
        return fingerprint
    if type(value).__module__.startswith("numpy") and hasattr(value, "tobytes"):
        return digest(repr((value.shape, str(value.dtype))).encode() + value.tobytes())
    if type(value).__module__.startswith("torch") and hasattr(value, "detach") and hasattr(value, "numpy"):
        return data_digest(value.detach().cpu().contiguous().numpy())
    if hasattr(value, "state_dict") and hasattr(value, "parameters"):  # a torch model: structure and weights
        return digest(repr(value) + weights_digest(value))
    resolved_path = getattr(value, "resolved_path", None)  # a file data source: its content, not its path
    if callable(resolved_path) and base_dir is not None:
        path = Path(resolved_path(base_dir))
        return file_digest(path) if path.exists() else None
    if isinstance(value, Mapping) and value and all(data_digest(v) for v in value.values()):
        return digest(json.dumps({str(k): data_digest(v) for k, v in value.items()}, sort_keys=True))
    return None


def config_value(value: Any) -> Any:
    """A JSON-able rendering of a config-like input (pydantic model, dataclass, scalars, containers)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_value(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): config_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [config_value(v) for v in value]
    raise TypeError(f"cannot fingerprint a {type(value).__name__} input")


def flat_config(value: Any, prefix: str) -> dict[str, str]:
    """Dotted key -> JSON of each leaf, so a miss can name the keys that changed."""
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flat_config(item, f"{prefix}.{key}"))
        return out
    text = json.dumps(value, sort_keys=True, default=str)
    return {prefix: text if len(text) <= _MAX_SHOWN else f"{text[:_MAX_SHOWN]}... ({digest(text, 8)})"}


def fingerprint_inputs(inputs: Mapping[str, Any],
                       base_dir: Path | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(config, data) parts of a step's inputs: data-like inputs by content, the rest as flattened config.

    A data source config with a file counts twice: its keys as config, the file's content as data."""
    config: dict[str, str] = {}
    data: dict[str, str] = {}
    for name, value in inputs.items():
        found = data_digest(value, base_dir)
        if found is not None:
            if not callable(getattr(value, "resolved_path", None)):
                data[name] = found
                continue
            data[f"{name}.file"] = found
        config.update(flat_config(config_value(value), name))
    return config, data
