"""`type: custom`: any Python callable `package.module:build` that returns an `nn.Module`."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from tasks.registry import MODELS, StrictModel


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
        module = self.target.partition(":")[0]
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        return [] if found else [(("target",), f"cannot find module '{module}' (is the project folder on PYTHONPATH?)")]

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
