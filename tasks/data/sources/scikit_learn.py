"""`source: sklearn`: a dataset bundled with scikit-learn (no network needed)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tasks.data.sources.base import DataBase, plain
from tasks.registry import DATA_SOURCES

if TYPE_CHECKING:
    import pandas as pd

SKLEARN_DATASETS = {"digits": "classification", "iris": "classification", "wine": "classification",
                    "breast_cancer": "classification", "diabetes": "regression"}


@DATA_SOURCES.register
class SklearnData(DataBase):
    """A dataset bundled with scikit-learn (no network needed)."""

    source: Literal["sklearn"]
    name: Literal["digits", "iris", "wine", "breast_cancer", "diabetes"]

    def describe(self) -> str:
        return f"sklearn:{self.name}"

    def load_frame(self, base_dir: Path) -> "tuple[pd.DataFrame, pd.Series, list[Any] | None]":
        import sklearn.datasets as skd

        bunch = getattr(skd, f"load_{self.name}")(as_frame=True)
        names = [plain(n) for n in bunch.target_names] if self.name != "diabetes" else None
        return bunch.data, bunch.target, names

    def inferred_task(self) -> str:
        return SKLEARN_DATASETS[self.name]
