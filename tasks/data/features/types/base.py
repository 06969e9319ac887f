"""What every feature type does: fit its state on the training column (JSON only), and encode any column with it.

A type's config is a pydantic model registered in `FEATURE_TYPES`; its fitted `state` is a plain dict, so the
logged model rebuilds the same encoding from JSON without unpickling anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from tasks.registry import StrictModel

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: how the network's input columns of a feature are treated downstream
BlockKind = Literal["scalable", "fixed", "embedding"]


@dataclass(frozen=True)
class Block:
    """The encoded columns one feature adds to the network input: names, and whether `standardize` may rescale them
    (`scalable`), must leave them (`fixed`: one-hot, 0/1, indicators) or they are category codes (`embedding`)."""

    names: list[str]
    kind: BlockKind
    cardinality: int = 0  # embedding blocks: codes run 0..cardinality-1
    dim: int = 0  # embedding blocks: the learned vector size


class FeatureType(StrictModel):
    """Base of the feature types (`type: numeric|category|binary|datetime|drop`)."""

    #: whether rows with a missing cell in this column are dropped from the data (`missing: drop_row`)
    drops_rows: ClassVar[bool] = False
    #: the MLflow signature type of the raw column, when the type fixes it (numeric: double); else from the data
    signature_type: ClassVar[str | None] = None
    #: options that belong to another one (numeric `fill_value` to `missing`): a column that sets the owner takes
    #: the dependant from itself only, never from `feature_defaults`
    dependent_options: ClassVar[dict[str, str]] = {}

    def fit(self, column: "pd.Series") -> dict[str, Any]:
        """The JSON state fitted on the training column (statistics, vocabulary)."""
        raise NotImplementedError

    def blocks(self, name: str, state: dict[str, Any]) -> list[Block]:
        """The encoded columns this feature adds, in order."""
        raise NotImplementedError

    def encode(self, column: "pd.Series", state: dict[str, Any]) -> "np.ndarray":
        """(rows, width) float32 values of the encoded columns; never NaN, never raises on an unseen value."""
        raise NotImplementedError

    def strategy(self, state: dict[str, Any]) -> str:
        """One line for the feature table: what is done to the column."""
        raise NotImplementedError

    def missing_strategy(self) -> str:
        return str(getattr(self, "missing", ""))

    def wants_row_dropped(self) -> bool:
        return getattr(self, "missing", None) == "drop_row"


def is_missing(column: "pd.Series") -> "np.ndarray":
    """Missing cells: NaN, None, NaT, pandas' NA, and blank strings."""
    import numpy as np
    import pandas as pd

    missing = column.isna().to_numpy()
    if column.dtype == object or pd.api.types.is_string_dtype(column):
        blank = column.astype("string").str.strip().fillna("") == ""
        missing = missing | blank.to_numpy(dtype=bool)
    return np.asarray(missing, dtype=bool)


def as_text(column: "pd.Series") -> "pd.Series":
    """Cell values as strings for vocabulary lookups (1 and 1.0 read from different files are the same value)."""
    import pandas as pd

    def one(value: Any) -> str:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value).strip()

    return pd.Series([one(v) for v in column.tolist()], index=column.index, dtype=object)
