"""Infer a column's feature type from its values, as a user would read the table: numbers are numeric, a few
distinct strings are a category (two: binary), dates are datetime, a row id or a pandas index is dropped; a string
column with too many distinct values is refused with the fix."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: a string column with more distinct values than this (and than half its rows) is not a category
CATEGORY_MAX_DISTINCT = 100
#: a few distinct strings are a category even in a tiny table
CATEGORY_ALWAYS = 20
ID_NAME = re.compile(r"(^|[_\s])(id|idx|index|key|nr|no|row)$", re.IGNORECASE)


@dataclass(frozen=True)
class Inferred:
    """The type a column was given, and why (shown in the feature table)."""

    type: str
    reason: str


class HighCardinality(ValueError):
    """A string column with too many distinct values to be a category."""


def infer_type(column: "pd.Series", position: int) -> Inferred:
    """The feature type of `column` (at `position` in the table); raises HighCardinality with the fix."""
    import pandas as pd

    from tasks.data.features.types.base import is_missing

    name = str(column.name)
    present = column[~is_missing(column)]  # blank strings are missing too, as in training
    distinct = int(present.nunique())
    if position == 0 and name.startswith("Unnamed: "):
        return Inferred("drop", "a row index written by pandas")
    if pd.api.types.is_bool_dtype(column):
        return Inferred("binary", "booleans")
    if pd.api.types.is_datetime64_any_dtype(column):
        return Inferred("datetime", "dates")
    if pd.api.types.is_numeric_dtype(column):
        if (pd.api.types.is_integer_dtype(column) and len(column) >= 20 and distinct == len(column)
                and (column.is_monotonic_increasing or ID_NAME.search(name))):
            return Inferred("drop", "a unique integer per row: a row id")
        return Inferred("numeric", "numbers")
    if _looks_like_dates(present):
        return Inferred("datetime", "dates")
    if distinct == 2:
        return Inferred("binary", "two distinct values")
    if distinct <= CATEGORY_ALWAYS or (distinct <= CATEGORY_MAX_DISTINCT and distinct <= len(present) / 2):
        return Inferred("category", f"{distinct} distinct values")
    raise HighCardinality(
        f"column '{name}' holds {distinct:,} distinct strings in {len(present):,} rows: too many for a category; "
        f"give it a type in `features`: `{name}: drop` (an id or free text), or `{name}: {{type: category, "
        f"max_categories: 50}}` to keep its most frequent values")


def _looks_like_dates(present: "pd.Series") -> bool:
    import pandas as pd

    sample = present.astype(str).head(200)
    if sample.empty:
        return False
    if not sample.str.contains(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4}", regex=True).all():
        return False
    return bool(pd.to_datetime(sample, errors="coerce", format="mixed").notna().all())
