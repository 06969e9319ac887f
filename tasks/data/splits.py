"""The in-memory result of a data step: seeded train/validation/test splits of a table, as numpy arrays."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

SPLITS = ("train", "validation", "test")
#: metric-name prefix of each split: `train_loss`, `val_accuracy`, `test_f1_macro`
METRIC_PREFIX = {"train": "train", "validation": "val", "test": "test"}

Task = Literal["classification", "regression"]


@dataclass
class TabularSplits:
    """Features and labels of each split; labels are class ids (classification) or floats (regression)."""

    name: str
    task: Task
    feature_names: list[str]
    X: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    classes: list[Any] = field(default_factory=list)  # original label values, index = class id
    source: str = ""
    #: the raw feature rows of each split (as read, before encoding): the logged model's input example and schema
    raw: dict[str, Any] = field(default_factory=dict)
    #: the fitted feature encoding (`FittedFeatures.to_dict()`), which the logged model applies to raw rows
    features: dict[str, Any] = field(default_factory=dict)
    #: rows left out and why (`label` missing, a `drop_row` column), and the feature table
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def layout(self) -> dict[str, Any]:
        """Which encoded columns `standardize` may rescale, and the embedding columns (see FittedFeatures.layout)."""
        if not self.features:
            return {"scalable": [True] * self.num_features, "embeddings": []}
        from tasks.data.features.fitted import FittedFeatures

        return FittedFeatures.from_dict(self.features).layout()

    @property
    def num_features(self) -> int:
        return int(self.X["train"].shape[1])

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    @property
    def digest(self) -> str:
        """Content fingerprint of all splits (not of the path they came from)."""
        h = hashlib.sha256()
        for split in SPLITS:
            h.update(np.ascontiguousarray(self.X[split]).tobytes())
            h.update(np.ascontiguousarray(self.y[split]).tobytes())
        h.update(repr((self.feature_names, [str(c) for c in self.classes], self.task)).encode())
        return h.hexdigest()[:16]

    def sizes(self) -> dict[str, int]:
        return {split: int(len(self.y[split])) for split in SPLITS}
