"""`type: binary`: a column of two values (booleans, yes/no, 0/1) as one 0/1 input."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from tasks.data.features.types.base import Block, FeatureType, as_text, is_missing
from tasks.registry import FEATURE_TYPES

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: values read as "true" when a column's two values are these (any case)
TRUE_WORDS = {"true", "yes", "y", "1", "t"}


@FEATURE_TYPES.register
class BinaryFeature(FeatureType):
    """A column of two values; the second in sorted order (or the "true"-looking one) is 1."""

    type: Literal["binary"] = "binary"
    missing: Literal["most_frequent", "drop_row"] = "most_frequent"

    def fit(self, column: "pd.Series") -> dict[str, Any]:
        values = as_text(column[~is_missing(column)])
        counts = values.value_counts()
        distinct = sorted(counts.index.tolist())
        if len(distinct) > 2:
            raise ValueError(f"column '{column.name}' is typed binary but holds {len(distinct)} distinct values "
                             f"({', '.join(map(str, distinct[:5]))}{', ...' if len(distinct) > 5 else ''}); "
                             "type it `category`")
        truthy = [v for v in distinct if v.lower() in TRUE_WORDS]
        positive = truthy[0] if len(truthy) == 1 else (distinct[-1] if distinct else "1")
        negative = next((v for v in distinct if v != positive), "")
        most = str(counts.index[0]) if len(counts) else negative
        return {"positive": positive, "negative": negative, "fill": 1.0 if most == positive else 0.0}

    def blocks(self, name: str, state: dict[str, Any]) -> list[Block]:
        return [Block([name], "fixed")]

    def encode(self, column: "pd.Series", state: dict[str, Any]) -> "np.ndarray":
        """1 for the positive value, 0 for the other, the most frequent for a missing or an unseen value."""
        import numpy as np

        text = as_text(column).to_numpy()
        out = np.full(len(text), state["fill"], dtype=np.float32)
        out[text == state["positive"]] = 1.0
        out[text == state["negative"]] = 0.0
        out[is_missing(column)] = state["fill"]
        return out[:, None]

    def strategy(self, state: dict[str, Any]) -> str:
        fill = "rows dropped" if self.missing == "drop_row" else "most frequent"
        return f"missing: {fill}; 1 = {state['positive']}, 0 = {state['negative']}"
