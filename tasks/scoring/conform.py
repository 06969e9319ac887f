"""A batch of rows as the model's signature takes it: the input columns it names, each cast to its type (a chunked
reader types a column by the rows it saw, so a batch without a missing cell holds integers where the model takes
doubles). A cell that does not fit is a ConfigError naming the row and column."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from tasks.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

WHERE = ("predict", "data")


def signature_inputs(model: Any) -> Optional[list[dict[str, Any]]]:
    """[{name, type, required}] of a model with a named column signature, else None (text models, no signature)."""
    schema = model.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        return None
    return [{"name": c.name, "type": getattr(c.type, "name", str(c.type)), "required": c.required}
            for c in schema.inputs]


def missing_columns(columns: list[str], inputs: Optional[list[dict[str, Any]]]) -> list[str]:
    """The required model inputs `columns` lack."""
    present = set(columns)
    return [i["name"] for i in inputs or () if i["required"] and i["name"] not in present]


def conform(frame: "pd.DataFrame", inputs: Optional[list[dict[str, Any]]], first_row: int) -> "pd.DataFrame":
    """`frame`'s model columns cast to the signature's types; rows are numbered from `first_row` in messages."""
    import numpy as np
    import pandas as pd

    if inputs is None:
        return frame
    out = {}
    for spec in inputs:
        name = spec["name"]
        if name not in frame.columns:
            continue  # optional: the model reads it as missing
        column = frame[name]
        if spec["type"] in ("double", "float", "long", "integer"):
            if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
                numbers = column  # already numbers: no cell can fail
                bad = None
            else:
                numbers = pd.to_numeric(column, errors="coerce")
                suspect = numbers.isna() & column.notna()
                bad = suspect & (column.astype("string").str.strip() != "") if suspect.any() else None
            if bad is not None and bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise ConfigError.single(f"row {first_row + row + 1}, column '{name}': {column.iloc[row]!r} is not "
                                         "a number", WHERE)
            if spec["type"] in ("long", "integer") and not numbers.isna().any():
                numbers = numbers.astype("int64")
            else:
                numbers = numbers.astype("float64")
            out[name] = numbers
        elif spec["type"] == "boolean":
            out[name] = column if pd.api.types.is_bool_dtype(column) else column.map(_truth)
        elif pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
            out[name] = column.astype(object).where(column.notna(), None)  # strings already: nulls as None
        else:
            text = column.astype(object)
            out[name] = text.where(column.notna(), None).map(lambda v: v if v is None else str(v))
    return pd.DataFrame(out, index=frame.index)


def _truth(value: Any) -> Any:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "t"):
        return True
    if text in ("false", "0", "no", "n", "f"):
        return False
    return None
