"""`type: custom`: any Python callable `package.module:build` that returns an `nn.Module`."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, field_validator

from tasks.registry import MODELS, StrictModel


def top_level_names(path: Any) -> Optional[set[str]]:
    """Names a Python source file binds at its top level (defs, classes, assignments, imports), read without
    importing it; None when that cannot be known (not a source file, a syntax error, `import *` or a module
    `__getattr__`), so that only a name surely missing is reported."""
    import ast

    if not path or not str(path).endswith(".py"):
        return None
    try:
        tree = ast.parse(open(path, encoding="utf-8").read())
    except (OSError, SyntaxError, ValueError):
        return None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(alias.name == "*" for alias in node.names):
                return None
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):  # bound here maybe: counts as bound
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)) and any(a.name == "*" for a in inner.names):
                    return None
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    names |= {(alias.asname or alias.name).split(".")[0] for alias in inner.names}
                elif isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(inner.name)
                elif isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                    names.add(inner.id)
    return None if "__getattr__" in names else names


@MODELS.register
class CustomModelConfig(StrictModel):
    """`build(in_features=..., out_features=..., **params)` is called; it may ignore the sizes it does not need."""

    type: Literal["custom"]
    modalities: ClassVar[frozenset[str]] = frozenset({"tabular"})
    target: str = Field(description="`package.module:callable` importable from the project folder")
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("target")
    @classmethod
    def _module_colon_callable(cls, value: str) -> str:
        module, sep, attr = value.partition(":")
        if not sep or not module or not attr or not all(p.isidentifier() for p in module.split(".") + attr.split(".")):
            raise ValueError(f"expected `package.module:callable`, got {value!r}")
        return value

    def preflight(self, base_dir: Any) -> list[tuple[tuple, str]]:
        module, _, attr = self.target.partition(":")
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if not found:
            return [(("target",), f"cannot find module '{module}' (is the project folder on PYTHONPATH?)")]
        names = top_level_names(found.origin)
        first = attr.split(".")[0]
        if names is not None and first not in names:
            from tasks.errors import did_you_mean

            return [(("target",), f"module '{module}' ({found.origin}) defines no '{first}'"
                     f"{did_you_mean(first, sorted(names))}")]
        return []

    def code_modules(self) -> list[str]:
        """The module `target` names: its code is part of a whole run's cache key (tasks/cache/run_key.py)."""
        return [self.target.partition(":")[0]]

    def resolve(self) -> Any:
        module_name, _, attr = self.target.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def build(self, in_features: int, out_features: int) -> Any:
        import torch.nn as nn

        factory = self.resolve()
        accepted = inspect.signature(factory).parameters
        kwargs = dict(self.params)
        for key, value in (("in_features", in_features), ("out_features", out_features)):
            if key in accepted or any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
                kwargs.setdefault(key, value)
        module = factory(**kwargs)
        if not isinstance(module, nn.Module):
            raise TypeError(f"{self.target} returned {type(module).__name__}, expected a torch.nn.Module")
        return module
