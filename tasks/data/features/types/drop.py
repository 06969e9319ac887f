"""`type: drop`: a column the model does not see (a row id, a free-text note, a leak of the label)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from tasks.data.features.types.base import Block, FeatureType
from tasks.registry import FEATURE_TYPES

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@FEATURE_TYPES.register
class DropFeature(FeatureType):
    """A column left out of the model's input."""

    type: Literal["drop"] = "drop"

    def fit(self, column: "pd.Series") -> dict[str, Any]:
        return {}

    def blocks(self, name: str, state: dict[str, Any]) -> list[Block]:
        return []

    def encode(self, column: "pd.Series", state: dict[str, Any]) -> "np.ndarray":
        import numpy as np

        return np.zeros((len(column), 0), dtype=np.float32)

    def strategy(self, state: dict[str, Any]) -> str:
        return "dropped"
