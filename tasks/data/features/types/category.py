"""`type: category`: a column of a few distinct values, one-hot encoded (the `max_categories` most frequent values,
the rest and any value unseen in training folded into `other`) or as codes of an embedding learned in the network."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import Field, model_validator

from tasks.data.features.types.base import Block, FeatureType, as_text, is_missing
from tasks.registry import FEATURE_TYPES

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

OTHER = "other"  #: the bucket of rare values and of values never seen in training
MISSING = "missing"  #: the bucket of missing cells under `missing: missing_category`


def embedding_dim(cardinality: int) -> int:
    """The embedding size for `cardinality` codes: fast.ai's rule, min(50, round(1.6 * n ** 0.56))."""
    return max(1, min(50, round(1.6 * cardinality ** 0.56)))


@FEATURE_TYPES.register
class CategoryFeature(FeatureType):
    """A column of a few distinct values (strings, or integer codes)."""

    type: Literal["category"] = "category"
    missing: Literal["most_frequent", "missing_category", "drop_row"] = "missing_category"
    encoding: Literal["one_hot", "embedding"] = "one_hot"
    max_categories: int = Field(20, ge=1, description="keep the most frequent values; the rest go to `other`")
    min_frequency: int = Field(1, ge=1, description="values seen fewer times in train go to `other`")
    embedding_dim: Optional[int] = Field(None, ge=1, le=512, description="default: min(50, 1.6 * n ** 0.56)")

    @model_validator(mode="after")
    def _dim_needs_embedding(self) -> "CategoryFeature":
        if self.embedding_dim is not None and self.encoding != "embedding":
            raise ValueError("`embedding_dim` is used only with `encoding: embedding`")
        return self

    def fit(self, column: "pd.Series") -> dict[str, Any]:
        missing = is_missing(column)
        counts = as_text(column[~missing]).value_counts(sort=False)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # ties broken by value: reproducible
        kept = [value for value, n in ranked if n >= self.min_frequency][: self.max_categories]
        state: dict[str, Any] = {"categories": kept, "folded": len(ranked) - len(kept),
                                 "fill": ranked[0][0] if ranked else OTHER}
        if self.encoding == "embedding":
            width = len(kept) + 1 + (self.missing == "missing_category")
            state["dim"] = self.embedding_dim or embedding_dim(width)
        return state

    def _buckets(self, state: dict[str, Any]) -> list[str]:
        return list(state["categories"]) + [OTHER] + ([MISSING] if self.missing == "missing_category" else [])

    def blocks(self, name: str, state: dict[str, Any]) -> list[Block]:
        buckets = self._buckets(state)
        if self.encoding == "embedding":
            return [Block([name], "embedding", cardinality=len(buckets), dim=int(state["dim"]))]
        return [Block([f"{name}={value}" for value in buckets], "fixed")]

    def codes(self, column: "pd.Series", state: dict[str, Any]) -> "np.ndarray":
        """Each cell's bucket: its category's index, `other` for a rare or unseen value, `missing` (or the most
        frequent value) for a missing cell."""
        import numpy as np

        buckets = self._buckets(state)
        index = {value: i for i, value in enumerate(state["categories"])}
        other = len(state["categories"])
        missing = is_missing(column)
        text = as_text(column)
        import pandas as pd

        found = pd.Index(state["categories"], dtype=object).get_indexer(text.astype(object))  # vectorised lookup
        codes = np.where(found < 0, other, found).astype(np.int64)
        fill = len(buckets) - 1 if self.missing == "missing_category" else index.get(state["fill"], other)
        codes[missing] = fill
        return codes

    def encode(self, column: "pd.Series", state: dict[str, Any]) -> "np.ndarray":
        import numpy as np

        codes = self.codes(column, state)
        if self.encoding == "embedding":
            return codes.astype(np.float32)[:, None]
        out = np.zeros((len(codes), len(self._buckets(state))), dtype=np.float32)
        out[np.arange(len(codes)), codes] = 1.0
        return out

    def strategy(self, state: dict[str, Any]) -> str:
        fill = {"most_frequent": f"most frequent ({state['fill']})", "missing_category": "own bucket",
                "drop_row": "rows dropped"}[self.missing]
        folded = f", {state['folded']} rare folded into other" if state["folded"] else ""
        how = f"embedding dim {state['dim']}" if self.encoding == "embedding" else "one-hot"
        return f"missing: {fill}; {how} of {len(state['categories'])} values{folded}"
