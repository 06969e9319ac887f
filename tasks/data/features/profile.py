"""The training data's distribution per raw feature column, logged beside the model (`features/profile.json`) so a
scoring run can tell how far new rows have drifted: numbers by train's deciles, strings by their most frequent
values (the rest as `other`), missing cells as a bucket of their own."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

FORMAT = "fuseflow-profile/1"
BINS = 10
TOP_VALUES = 20
MISSING, OTHER = "__missing__", "__other__"


def profile_frame(frame: "pd.DataFrame") -> dict[str, Any]:
    """Per column: `numeric` with bin edges (train's quantiles) and the share of rows in each bin (and missing), or
    `values` with the share of its most frequent values, `__other__` and `__missing__`."""
    import numpy as np
    import pandas as pd

    columns: dict[str, Any] = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = column.to_numpy(dtype="float64", na_value=np.nan)
            present = values[np.isfinite(values)]
            if present.size == 0:
                continue
            edges = np.unique(np.quantile(present, np.linspace(0, 1, BINS + 1))[1:-1]).tolist()
            columns[str(name)] = {"kind": "numeric", "edges": edges,
                                  "shares": numeric_counts(values, edges).tolist()}
        else:
            text = column.astype("string")
            top = text.dropna().value_counts().head(TOP_VALUES).index.tolist()
            columns[str(name)] = {"kind": "values", "values": [str(v) for v in top],
                                  "shares": value_counts(column, top).tolist()}
    for spec in columns.values():
        total = sum(spec["shares"]) or 1
        spec["shares"] = [c / total for c in spec["shares"]]
    return {"format": FORMAT, "rows": int(len(frame)), "columns": columns}


def numeric_counts(values: Any, edges: list[float]) -> Any:
    """Rows per bin (len(edges) + 1 bins) and, last, the missing ones."""
    import numpy as np

    values = np.asarray(values, dtype="float64")
    finite = np.isfinite(values)
    bins = np.searchsorted(np.asarray(edges, dtype="float64"), values[finite], side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1).astype("float64")
    return np.append(counts, float((~finite).sum()))


def value_counts(column: "pd.Series", values: list[str]) -> Any:
    """Rows per known value, then `other`, then missing."""
    import numpy as np

    text = column.astype("string")
    missing = text.isna() | (text.str.strip() == "")
    import pandas as pd

    index = pd.Index(values, dtype=object).get_indexer(text[~missing].astype(object)).astype("int64")
    index[index < 0] = len(values)  # not a known value: `other`
    counts = np.bincount(index, minlength=len(values) + 1).astype("float64")
    return np.append(counts, float(missing.sum()))
