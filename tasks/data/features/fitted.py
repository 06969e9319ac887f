"""Decide each column's type (declared or inferred), fit every feature on the training rows, and encode any frame
of raw rows into the network's float input. The fitted state is JSON (`to_dict`), saved beside the model's weights,
so a prediction on raw rows applies exactly the training encoding without unpickling anything."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from tasks.data.features.types.base import Block, is_missing

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FORMAT = "fuseflow-features/1"
Issue = tuple[tuple, str]


@dataclass
class ColumnPlan:
    """A feature column, its type config, and where the type came from (`declared`, or why it was inferred)."""

    name: str
    config: Any
    reason: str = "declared"


def plan_columns(frame: "pd.DataFrame", columns: Any = None) -> tuple[list[ColumnPlan], list[Issue]]:
    """The type of every column of `frame` (the feature columns, label removed): declared in `columns.features`,
    or inferred; returns the plans and the problems as (key path under `data`, message)."""
    from tasks.data.features.infer import HighCardinality, infer_type
    from tasks.registry import FEATURE_TYPES

    plans: list[ColumnPlan] = []
    issues: list[Issue] = []
    for position, name in enumerate(frame.columns):
        try:
            declared = columns.declared_type(str(name)) if columns is not None else None
        except ValueError as exc:  # its options clash with `feature_defaults`
            issues.append((("features", str(name)), str(exc)))
            continue
        if declared is not None:
            plans.append(ColumnPlan(str(name), declared))
            continue
        try:
            inferred = infer_type(frame[name], position)
        except HighCardinality as exc:
            key = ("features", str(name)) if isinstance(getattr(columns, "features", None), dict) else ("features",)
            issues.append((key, str(exc)))
            continue
        try:
            config = columns.typed_for(inferred.type) if columns is not None else FEATURE_TYPES.get(inferred.type)()
        except ValueError as exc:
            issues.append((("feature_defaults", inferred.type), str(exc)))
            continue
        plans.append(ColumnPlan(str(name), config, f"inferred: {inferred.reason}"))
    return plans, issues


def signature_type(column: "pd.Series") -> str:
    """The MLflow column type of a raw column: what a user's DataFrame (from pd.read_csv) holds there."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column):
        return "boolean"
    if pd.api.types.is_integer_dtype(column):
        return "long"
    if pd.api.types.is_float_dtype(column):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(column):
        return "datetime"
    return "string"


@dataclass
class FittedFeatures:
    """Every used column's type config and fitted state, and the raw input schema (names, types, nullable)."""

    columns: list[dict[str, Any]]
    inputs: list[dict[str, Any]] = field(default_factory=list)  # {name, type, nullable}: the raw columns a row needs

    @classmethod
    def fit(cls, plans: list[ColumnPlan], train: "pd.DataFrame", table: "pd.DataFrame") -> "FittedFeatures":
        """Fit each feature on `train`; the input schema (nullable columns) comes from the whole `table`."""
        columns, inputs = [], []
        for plan in plans:
            state = plan.config.fit(train[plan.name])
            columns.append({"name": plan.name, "config": plan.config.model_dump(mode="json"), "state": state,
                            "reason": plan.reason})
            if plan.config.type != "drop" and plan.config.blocks(plan.name, state):
                column = table[plan.name]
                kind = plan.config.signature_type or signature_type(column)
                inputs.append({"name": plan.name, "type": kind, "nullable": bool(is_missing(column).any())})
        return cls(columns, inputs)

    def _configs(self) -> list[Any]:
        """The columns' type configs, validated once (predict calls this for every batch)."""
        from tasks.registry import FEATURE_TYPES

        cached = self.__dict__.get("_validated")
        if cached is None:
            cached = [FEATURE_TYPES.get(c["config"]["type"]).model_validate(c["config"]) for c in self.columns]
            self.__dict__["_validated"] = cached
        return cached

    def blocks(self) -> list[Block]:
        return [b for config, c in zip(self._configs(), self.columns) for b in config.blocks(c["name"], c["state"])]

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [name for block in self.blocks() for name in block.names]

    def layout(self) -> dict[str, Any]:
        """Which encoded columns `standardize` may rescale, and the embedding columns (index, codes, size)."""
        scalable: list[bool] = []
        embeddings: list[dict[str, int]] = []
        for block in self.blocks():
            if block.kind == "embedding":
                embeddings.append({"column": len(scalable), "cardinality": block.cardinality, "dim": block.dim})
            scalable += [block.kind == "scalable"] * len(block.names)
        return {"scalable": scalable, "embeddings": embeddings}

    def missing_inputs(self, frame: "pd.DataFrame") -> list[str]:
        present = {str(c) for c in frame.columns}
        return [name for name in self.input_names if name not in present]

    def transform(self, frame: "pd.DataFrame") -> "np.ndarray":
        """Raw rows -> the network's float32 input; a missing required column is an error that names it, a missing
        optional one (it had missing cells in training, so the signature lets a caller leave it out) is all
        missing; extra columns are ignored."""
        import numpy as np

        frame = frame.rename(columns=str)
        absent = {i["name"]: (np.nan if i["type"] in ("double", "long", "float", "integer") else None)
                  for i in self.inputs if i.get("nullable") and i["name"] not in frame.columns}
        if absent:
            frame = frame.assign(**absent)
        missing = self.missing_inputs(frame)
        if missing:
            raise ValueError(f"the rows lack the model's input column(s) {missing} (the model takes: "
                             f"{', '.join(self.input_names)})")
        parts = [config.encode(frame[c["name"]], c["state"]) for config, c in zip(self._configs(), self.columns)
                 if config.blocks(c["name"], c["state"])]
        if not parts:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)

    def table(self, frame: "pd.DataFrame") -> list[dict[str, Any]]:
        """The feature table: per column its type, missing %, distinct values, strategy and where the type came from."""
        rows = []
        for config, c in zip(self._configs(), self.columns):
            column = frame[c["name"]]
            missing = is_missing(column)
            rows.append({"column": c["name"], "type": config.type,
                         "missing_pct": round(100.0 * float(missing.mean()) if len(column) else 0.0, 2),
                         "distinct": int(column[~missing].nunique()), "strategy": config.strategy(c["state"]),
                         "source": c["reason"]})
        return rows

    def all_numeric(self) -> bool:
        """Whether every input is a plain number column (so a float array can stand for a frame of the inputs)."""
        return all(c["config"]["type"] in ("numeric", "drop") for c in self.columns)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "columns": self.columns, "inputs": self.inputs}

    @classmethod
    def from_dict(cls, data: Optional[dict[str, Any]]) -> "FittedFeatures":
        if not data or data.get("format") != FORMAT:
            raise ValueError(f"not a fuseflow feature state (format {None if not data else data.get('format')!r})")
        return cls(list(data["columns"]), list(data.get("inputs") or []))
