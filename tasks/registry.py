"""Registries of step kinds: each config class registers itself under its discriminator value (Ludwig-style).

Adding a model, data source or fusion method is one file: define a pydantic config class with a
``Literal`` discriminator field and decorate it with ``@REGISTRY.register``.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class Registry:
    """Config classes of one step kind, keyed by the value of their discriminator field."""

    def __init__(self, kind: str, discriminator: str) -> None:
        self.kind = kind
        self.discriminator = discriminator
        self._classes: dict[str, type[BaseModel]] = {}

    def register(self, cls: type[BaseModel]) -> type[BaseModel]:
        """Class decorator: register ``cls`` under the Literal value of its discriminator field."""
        field = cls.model_fields.get(self.discriminator)
        if field is None or get_origin(field.annotation) is not Literal:
            raise TypeError(f"{cls.__name__} needs a `{self.discriminator}: Literal[...]` field to register as a {self.kind}")
        for value in get_args(field.annotation):
            if value in self._classes and self._classes[value] is not cls:
                raise ValueError(f"{self.kind} {value!r} is registered twice ({self._classes[value].__name__}, {cls.__name__})")
            self._classes[value] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> type[BaseModel]:
        return self._classes[name]

    def union(self) -> Any:
        """The pydantic type that validates any registered config, discriminated by the field."""
        classes = list(dict.fromkeys(self._classes.values()))
        if len(classes) == 1:
            return classes[0]
        return Annotated[Union[tuple(classes)], Field(discriminator=self.discriminator)]


def import_submodules(package_name: str) -> None:
    """Import every module of a package so that their ``@register`` decorators run."""
    package = importlib.import_module(package_name)
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package_name}.{info.name}")


DATA_SOURCES = Registry("data source", "source")
PREPROCESSORS = Registry("preprocess step", "name")
MODELS = Registry("model type", "type")
TRAINERS = Registry("training backend", "backend")
FUSION_METHODS = Registry("fusion method", "method")
