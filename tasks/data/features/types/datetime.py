"""`type: datetime`: a date or time column, expanded into year, month and day of week (numbers the network can
use), or dropped (`mode: drop`)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from tasks.data.features.types.base import Block, FeatureType
from tasks.registry import FEATURE_TYPES

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

PARTS = ("year", "month", "day_of_week")


@FEATURE_TYPES.register
class DatetimeFeature(FeatureType):
    """A date/time column; missing cells take the median of each part."""

    type: Literal["datetime"] = "datetime"
    mode: Literal["expand", "drop"] = "expand"

    def _parts(self, column: "pd.Series") -> "np.ndarray":
        import numpy as np
        import pandas as pd

        stamps = pd.to_datetime(column, errors="coerce", format="mixed") if not pd.api.types.is_datetime64_any_dtype(
            column) else column
        return np.stack([getattr(stamps.dt, part).astype("float64").to_numpy(na_value=np.nan) for part in PARTS],
                        axis=1) if len(column) else np.zeros((0, len(PARTS)))

    def fit(self, column: "pd.Series") -> dict[str, Any]:
        import numpy as np

        if self.mode == "drop":
            return {}
        parts = self._parts(column)
        medians = [float(np.nanmedian(parts[:, i])) if np.isfinite(parts[:, i]).any() else 0.0
                   for i in range(len(PARTS))]
        return {"fill": medians}

    def blocks(self, name: str, state: dict[str, Any]) -> list[Block]:
        return [] if self.mode == "drop" else [Block([f"{name}_{part}" for part in PARTS], "scalable")]

    def encode(self, column: "pd.Series", state: dict[str, Any]) -> "np.ndarray":
        import numpy as np

        if self.mode == "drop":
            return np.zeros((len(column), 0), dtype=np.float32)
        parts = self._parts(column)
        fill = np.asarray(state["fill"])
        return np.where(np.isnan(parts), fill, parts).astype(np.float32)

    def strategy(self, state: dict[str, Any]) -> str:
        return "dropped" if self.mode == "drop" else "expanded to year, month, day of week; missing: median"
