"""The column keys a table source shares: `label_column`, `features` (a list of names, or a mapping of names to
types) and `feature_defaults` (options per type, e.g. `{numeric: {missing: mean}}`)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional, Union

from pydantic import Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from tasks.registry import FEATURE_TYPES, StrictModel

if TYPE_CHECKING:
    import pandas as pd

#: `name: auto` in a `features` mapping: infer this column's type from the data
AUTO = "auto"


def _type_per_key(value: Any) -> Any:
    """`{numeric: {missing: mean}}` -> `{numeric: {type: numeric, missing: mean}}` (the key names the type)."""
    if not isinstance(value, dict):
        return value
    return {key: ({"type": key, **options} if isinstance(options, dict) else options) for key, options in value.items()}


def _auto_or_type(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: (None if spec == AUTO else spec) for name, spec in value.items()}
    return value


def _features_form(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "list"


class TableColumns(StrictModel):
    """Which columns of a table are the label and the features, and what type each feature is."""

    label_column: str
    # a mapping is checked as a mapping only (an error in it must not also say "Input should be a valid list")
    features: Optional[Annotated[Union[  # type: ignore[valid-type]
        Annotated[list[str], Tag("list")],
        Annotated[dict[str, Optional[FEATURE_TYPES.field_type()]], Tag("mapping")],  # type: ignore[valid-type]
    ], Discriminator(_features_form)]] = Field(
        None, description="feature columns (default: all but the label): a list of names (types inferred), or a "
        "mapping `name: type` / `name: {type: ..., options}` / `name: auto`")
    feature_defaults: dict[str, FEATURE_TYPES.field_type()] = Field(  # type: ignore[valid-type]
        default_factory=dict, description="options for every column of a type, e.g. {numeric: {missing: mean}, "
        "category: {max_categories: 10}}")

    @field_validator("features", mode="before")
    @classmethod
    def _features_shape(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("`features` is empty: name at least one column, or leave `features` out to use all")
        return _auto_or_type(value)

    @field_validator("feature_defaults", mode="before")
    @classmethod
    def _defaults_shape(cls, value: Any) -> Any:
        return _type_per_key(value)

    @model_validator(mode="after")
    def _label_is_not_a_feature(self) -> "TableColumns":
        if self.features and self.label_column in self.features:
            raise ValueError(f"`features` lists the label column '{self.label_column}': a model would learn its own "
                             "target; remove it from `features`")
        return self

    def feature_columns(self) -> Optional[list[str]]:
        """The named feature columns in order, or None for "every column but the label"."""
        return list(self.features) if self.features else None

    def group_column(self) -> Optional[str]:
        split = getattr(self, "split", None)
        return getattr(split, "group_by", None)

    def select(self, frame: "pd.DataFrame") -> "tuple[pd.DataFrame, pd.Series]":
        """(feature columns, label) of a loaded table; the `split.group_by` column rides along with the features
        (the split takes it out)."""
        label = frame[self.label_column]
        names = self.feature_columns()
        if names is None:
            return frame.drop(columns=[self.label_column]), label
        group = self.group_column()
        return frame[names + ([group] if group and group not in names else [])], label

    def column_issues(self, columns: list[str]) -> list[tuple[tuple, str]]:
        """Every named column (label, features, group_by, text columns) must be in the table: (key path, message)."""
        from tasks.errors import did_you_mean

        wanted: list[tuple[tuple, str]] = [(("label_column",), self.label_column)]
        wanted += [(("features", c if isinstance(self.features, dict) else i), c)
                   for i, c in enumerate(self.feature_columns() or [])]
        if self.group_column():
            wanted.append((("split", "group_by"), self.group_column()))
        if getattr(self, "text_column", None):
            wanted.append((("text_column",), self.text_column))
        wanted += [(("text_columns", i), c) for i, c in enumerate(getattr(self, "text_columns", None) or [])]
        return [(key, f"unknown column '{column}'{did_you_mean(column, columns)} (columns: {', '.join(columns)})")
                for key, column in wanted if column not in columns]

    def table_issues(self, frame: "pd.DataFrame") -> list[tuple[tuple, str]]:
        """What the data itself refuses before a run: a label with no values, a column no type fits."""
        from tasks.data.features.fitted import plan_columns
        from tasks.data.features.types.base import is_missing

        if getattr(self, "modality", "tabular") == "text":
            return []
        features, label = self.select(frame)
        if is_missing(label).all():
            return [(("label_column",), f"label column '{self.label_column}' has no values (all {len(label)} cells "
                     "are missing); check that `label_column` names the column to predict")]
        group = self.group_column()
        if group and group not in (self.feature_columns() or []):
            features = features.drop(columns=[group])
        return plan_columns(features, self)[1]

    def declared_type(self, column: str) -> Any:
        """The feature type config the YAML gives `column` (merged over `feature_defaults`), or None to infer."""
        declared = self.features.get(column) if isinstance(self.features, dict) else None
        if declared is None:
            return None
        return with_defaults(declared, self.feature_defaults)

    def typed_for(self, type_name: str) -> Any:
        """A default config of `type_name` (for an inferred column), with `feature_defaults` applied."""
        cls = FEATURE_TYPES.get(type_name)
        return with_defaults(cls(), self.feature_defaults)


def with_defaults(config: Any, defaults: dict[str, Any]) -> Any:
    """`config` with the options of `feature_defaults[its type]` it does not set itself."""
    base = defaults.get(config.type)
    if base is None:
        return config
    own = config.model_dump(exclude_unset=True)
    inherited = {key: value for key, value in base.model_dump(exclude_unset=True).items()
                 if config.dependent_options.get(key) not in own}
    try:
        return type(config).model_validate({**inherited, **own, "type": config.type})
    except ValidationError as exc:  # a combination only the merge makes: said as a config problem, with both keys
        reasons = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise ValueError(f"this column's options combined with `feature_defaults.{config.type}`: {reasons}") from None
