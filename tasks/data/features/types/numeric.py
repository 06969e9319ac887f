"""`type: numeric`: a number column; missing cells filled (mean, median, constant) or their rows dropped, with an
optional "was missing" indicator; scaled by `standardize` / `minmax` fitted on train, or left as is."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

from pydantic import model_validator

from tasks.data.features.types.base import Block, FeatureType
from tasks.registry import FEATURE_TYPES

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@FEATURE_TYPES.register
class NumericFeature(FeatureType):
    """A number column."""

    type: Literal["numeric"] = "numeric"
    missing: Literal["mean", "median", "constant", "drop_row"] = "median"
    fill_value: Optional[float] = None
    indicator: bool = False
    scaling: Literal["none", "standardize", "minmax"] = "none"

    dependent_options: ClassVar[dict[str, str]] = {"fill_value": "missing"}

    @model_validator(mode="after")
    def _constant_needs_a_value(self) -> "NumericFeature":
        if self.missing == "constant" and self.fill_value is None:
            raise ValueError("`missing: constant` needs `fill_value` (the number that stands in for a missing cell)")
        if self.fill_value is not None and self.missing != "constant":
            raise ValueError(f"`fill_value` is used only with `missing: constant` (this column says `missing: "
                             f"{self.missing}`)")
        return self

    def fit(self, column: "pd.Series") -> dict[str, Any]:
        import numpy as np

        values = numbers(column)
        present = values[~np.isnan(values)]
        if present.size == 0:
            fill = float(self.fill_value or 0.0)
        elif self.missing == "mean":
            fill = float(present.mean())
        elif self.missing == "constant":
            fill = float(self.fill_value)
        else:  # median; drop_row keeps the median for prediction rows, which are never dropped
            fill = float(np.median(present))
        filled = np.where(np.isnan(values), fill, values)
        offset, scale = 0.0, 1.0
        if self.scaling == "standardize" and filled.size:
            offset, scale = float(filled.mean()), float(filled.std()) or 1.0
        elif self.scaling == "minmax" and filled.size:
            offset, scale = float(filled.min()), float(filled.max() - filled.min()) or 1.0
        return {"fill": fill, "offset": offset, "scale": scale}

    def blocks(self, name: str, state: dict[str, Any]) -> list[Block]:
        blocks = [Block([name], "scalable" if self.scaling == "none" else "fixed")]
        if self.indicator:
            blocks.append(Block([f"{name}_missing"], "fixed"))
        return blocks

    def encode(self, column: "pd.Series", state: dict[str, Any]) -> "np.ndarray":
        import numpy as np

        values = numbers(column)
        missing = np.isnan(values)
        filled = (np.where(missing, state["fill"], values) - state["offset"]) / state["scale"]
        parts = [filled]
        if self.indicator:
            parts.append(missing.astype(np.float64))
        return np.stack(parts, axis=1).astype(np.float32)

    def strategy(self, state: dict[str, Any]) -> str:
        fill = {"drop_row": "rows dropped"}.get(self.missing, f"{self.missing} ({state['fill']:.4g})")
        text = f"missing: {fill}" + (" + indicator" if self.indicator else "")
        return text + ("" if self.scaling == "none" else f"; {self.scaling}")


def numbers(column: "pd.Series") -> "np.ndarray":
    """The column as float64 with NaN for missing cells; a cell that is not a number is an error naming it."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(column):
        return column.astype(float).to_numpy()
    if pd.api.types.is_numeric_dtype(column):
        return column.astype("float64").to_numpy(na_value=np.nan)
    cells = column.astype("string").str.strip()
    cells = cells.mask(cells.fillna("").str.lower().isin({"", "na", "nan", "null", "none", "n/a"}))
    converted = pd.to_numeric(cells, errors="coerce")
    bad = converted.isna() & cells.notna()
    if bad.any():
        first = bad.to_numpy().nonzero()[0][0]
        raise ValueError(f"column '{column.name}' is numeric, but row {first} holds {cells.iloc[first]!r}")
    return converted.astype("float64").to_numpy(na_value=np.nan)
