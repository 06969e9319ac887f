"""Registries of components: each config class registers itself under its discriminator value (Ludwig-style).

Adding a model, data source, preprocess step, trainer or fusion method is one file in its registry's package: a
pydantic config class with a ``Literal`` discriminator field, decorated with ``@REGISTRY.register``. Metrics and
losses are functions, registered by name in `FunctionRegistry`s. Nothing registers at import time of this module:
`load_components()` (called by every lookup) imports each registry's built-in package once, then every installed
plugin (Python entry points of the group ``fuseflow.plugins``), so a user's package adds components without a fork.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Iterator, Literal, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Discriminator, model_validator
from pydantic_core import PydanticCustomError

log = logging.getLogger("fuseflow")

#: the entry-point group of fuseflow plugins; each entry names a module (or a callable) that registers components
PLUGIN_GROUP = "fuseflow.plugins"


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment; the validator is
    built on first use (so importing a config module is cheap and registries may still be loading)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, data: Any) -> Any:
        """`epochs: true` is a mistake, not 1: a boolean is refused where a number (and no boolean) is expected,
        as a value or as an item of a list of numbers (`hidden: [true]`)."""
        if not isinstance(data, dict):
            return data
        for key, value in data.items():
            field_info = cls.model_fields.get(key)
            if field_info is None:
                continue
            annotation = field_info.annotation
            if isinstance(value, bool) and _takes_number_not_bool(annotation):
                raise PydanticCustomError("bool_for_number", "`{key}`: expected a number, got `{value}` (a boolean)",
                                          {"key": key, "value": str(value).lower()})
            if isinstance(value, list) and any(isinstance(item, bool) for item in value):
                items = [get_args(tp)[0] for tp in _union_members(annotation) if get_origin(tp) is list and get_args(tp)]
                if any(_takes_number_not_bool(tp) for tp in items):
                    raise PydanticCustomError("bool_for_number", "`{key}`: expected numbers, got `{value}` (a boolean)",
                                              {"key": key, "value": str(next(v for v in value if isinstance(v, bool))).lower()})
        return data


#: the largest seed every library takes (numpy's and scikit-learn's generators take 32-bit seeds)
MAX_SEED = 2**32 - 1


def _union_members(annotation: Any) -> set[Any]:
    """The types a field admits, through Optional, Union and Annotated."""
    found: set[Any] = set()

    def walk(tp: Any) -> None:
        if get_origin(tp) is Annotated:
            walk(get_args(tp)[0])
        elif get_origin(tp) is Union or type(tp).__name__ == "UnionType":
            for arg in get_args(tp):
                walk(arg)
        else:
            found.add(tp)

    walk(annotation)
    return found


def _takes_number_not_bool(annotation: Any) -> bool:
    """Whether a field's type admits int or float but not bool (through Optional, Union and Annotated)."""
    found = _union_members(annotation)
    return bool(found & {int, float}) and not found & {bool, Any}


class _RegistryUnion:
    """Pydantic marker: the field validates as the union of a registry's classes, built when the field's schema is
    (on first validation, after every component has registered)."""

    def __init__(self, registry: "Registry") -> None:
        self.registry = registry

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        return handler.generate_schema(self.registry.union())


class Registry:
    """Config classes of one component kind, keyed by the value of their discriminator field.

    `package` holds the built-in components (every module in it is imported by `load_components`). With
    `shorthand`, a one-key mapping `{name: {options}}` or a bare `name` is accepted for `{discriminator: name, ...}`
    (preprocess steps, fusion methods)."""

    def __init__(self, kind: str, discriminator: str, package: str, shorthand: bool = False,
                 requires: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.discriminator = discriminator
        self.package = package
        self.shorthand = shorthand
        self.requires = requires  # class attributes every component must define (checked when it registers)
        self._classes: dict[str, type[BaseModel]] = {}
        _ALL.registries.append(self)

    def register(self, cls: type[BaseModel]) -> type[BaseModel]:
        """Class decorator: register ``cls`` under the Literal value of its discriminator field."""
        field_info = cls.model_fields.get(self.discriminator)
        if field_info is None or get_origin(field_info.annotation) is not Literal:
            raise TypeError(f"{cls.__name__} needs a `{self.discriminator}: Literal[...]` field to register as a "
                            f"{self.kind}")
        missing = [name for name in self.requires if not hasattr(cls, name)]
        if missing:
            raise TypeError(f"{cls.__name__} needs {', '.join(f'`{m}`' for m in missing)} to register as a {self.kind} "
                            "(e.g. `modalities: ClassVar[frozenset[str]] = frozenset({'tabular'})`: the data it takes)")
        for value in get_args(field_info.annotation):
            if value in self._classes and self._classes[value] is not cls:
                raise ValueError(f"{self.kind} {value!r} is registered twice ({self._classes[value].__name__}, "
                                 f"{cls.__name__})")
            self._classes[value] = cls
        return cls

    def names(self) -> list[str]:
        load_components()
        return sorted(self._classes)

    def get(self, name: str) -> type[BaseModel]:
        load_components()
        return self._classes[name]

    def classes(self) -> list[type[BaseModel]]:
        load_components()
        return list(dict.fromkeys(self._classes.values()))

    def union(self) -> Any:
        """The pydantic type that validates any registered config, discriminated by the field."""
        classes = self.classes()
        if len(classes) == 1:
            return classes[0]
        return Annotated[Union[tuple(classes)], Discriminator(self.discriminator)]

    def field_type(self) -> Any:
        """The type of a config section validated by this registry (`model: MODELS.field_type()`)."""
        if self.shorthand:
            from pydantic import BeforeValidator

            return Annotated[Any, _RegistryUnion(self), BeforeValidator(self.normalize)]
        return Annotated[Any, _RegistryUnion(self)]

    def normalize(self, value: Any) -> Any:
        """`name` or `{name: {options}}` -> `{discriminator: name, **options}`; the full form passes through."""
        key = self.discriminator
        if isinstance(value, str):
            return {key: value}
        if isinstance(value, dict) and len(value) == 1 and key not in value:
            (name, options), = value.items()
            options = {} if options is None else options
            if isinstance(options, dict):
                return {key: name, **options}
            raise ValueError(f"each {self.kind} is `name` or `{{name: {{options}}}}`; `{name}: {options!r}` gives "
                             f"no mapping of options (are the options indented under the {self.kind}'s name?)")
        if isinstance(value, (dict, BaseModel)):
            return value
        raise ValueError(f"each {self.kind} is a name or a mapping with one key, the name, e.g. "
                         f"`{self.names()[0] if self.names() else 'name'}: {{}}`")


@dataclass(frozen=True)
class RegisteredFunction:
    """A function registered by name, with what the registry records about it (e.g. a metric's task)."""

    name: str
    fn: Callable[..., Any]
    info: dict[str, Any]


class FunctionRegistry:
    """Functions of one kind (metrics, losses) by name: `@METRICS.register("accuracy", task="classification")`."""

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, RegisteredFunction] = {}
        _ALL.registries.append(self)

    def register(self, name: str, **info: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries and self._entries[name].fn is not fn:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = RegisteredFunction(name, fn, dict(info))
            return fn
        return decorate

    def names(self, **where: Any) -> list[str]:
        """Registered names, in registration order; `where` keeps those whose info matches."""
        load_components()
        return [n for n, e in self._entries.items() if all(e.info.get(k) == v for k, v in where.items())]

    def get(self, name: str) -> RegisteredFunction:
        load_components()
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        load_components()
        return name in self._entries

    def __iter__(self) -> Iterator[RegisteredFunction]:
        load_components()
        return iter(list(self._entries.values()))


@dataclass
class _Components:
    """Every registry, and whether their built-ins and plugins are loaded (once per process)."""

    registries: list[Any] = field(default_factory=list)
    loaded: bool = False
    loading: bool = False  # set while the loading thread imports (it may look a registry up meanwhile)
    lock: threading.RLock = field(default_factory=threading.RLock)
    plugins: list[str] = field(default_factory=list)


_ALL = _Components()


def _import_package(name: str) -> None:
    package = importlib.import_module(name)
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{name}.{info.name}")


def load_components() -> None:
    """Import every registry's built-in package, then every installed plugin, once per process; later calls return
    at once. Other threads wait until the registries are complete; a failed import is raised and tried again by
    the next call (nothing is marked loaded half-way)."""
    if _ALL.loaded:
        return
    with _ALL.lock:  # re-entrant: the loading thread itself returns at once below while it is importing
        if _ALL.loaded or _ALL.loading:
            return
        _ALL.loading = True
        try:
            for registry in list(_ALL.registries):
                _import_package(registry.package)
            _load_plugins()
            _ALL.loaded = True
        finally:
            _ALL.loading = False


def _load_plugins() -> None:
    """Each entry point of `PLUGIN_GROUP` names a module (imported: its decorators register) or a callable (called).
    A plugin that fails to load is reported once and skipped: its components are then unknown names, with the
    valid ones listed, rather than every pipeline failing."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            loaded = entry.load()
            if callable(loaded):
                loaded()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the pipelines that do not use it
            log.warning("fuseflow plugin '%s' (%s) failed to load: %s: %s", entry.name, entry.value,
                        type(exc).__name__, exc)
            continue
        _ALL.plugins.append(f"{entry.name} ({entry.value})")


def loaded_plugins() -> list[str]:
    """The plugins `load_components` loaded: `name (module)`."""
    load_components()
    return list(_ALL.plugins)


def registry_of(annotation: Any) -> Optional[Registry]:
    """The registry behind a field type made by `Registry.field_type` (for error messages that list valid keys)."""
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, _RegistryUnion):
            return meta.registry
    return None


def registry_named(discriminator: str, names: list[str]) -> Optional[Registry]:
    """The config registry keyed by `discriminator` whose names are `names` (to name its kind in an error)."""
    for registry in _ALL.registries:
        if isinstance(registry, Registry) and registry.discriminator == discriminator and \
                sorted(registry.names()) == sorted(names):
            return registry
    return None


DATA_SOURCES = Registry("data source", "source", "tasks.data.sources")
FEATURE_TYPES = Registry("feature type", "type", "tasks.data.features.types", shorthand=True)
PREPROCESSORS = Registry("preprocess step", "name", "tasks.data.preprocess", shorthand=True, requires=("modalities",))
MODELS = Registry("model type", "type", "tasks.models", requires=("modalities",))
TRAINERS = Registry("training backend", "backend", "tasks.train.backends", requires=("modalities", "trainer"))
FUSION_METHODS = Registry("fusion method", "method", "tasks.fusion.methods", shorthand=True)
SAMPLERS = Registry("sweep sampler", "name", "tasks.sweep.samplers", shorthand=True)
PRUNERS = Registry("sweep pruner", "name", "tasks.sweep.pruners", shorthand=True)
METRICS = FunctionRegistry("metric", "tasks.evaluate.metrics")
LOSSES = FunctionRegistry("loss", "tasks.train.losses")
