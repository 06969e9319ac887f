"""Keys every data source shares (split, task, row cap) and the one place a pipeline's modality is decided."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, Union

from pydantic import Field, model_validator

from tasks.registry import MAX_SEED, StrictModel

if TYPE_CHECKING:
    import pandas as pd

#: what a pipeline trains on: a feature table, or text (one column, or a pair of columns)
Modality = Literal["tabular", "text"]


class SplitConfig(StrictModel):
    """Fractions held out for validation and test; stratified by label for classification."""

    validation: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    stratify: bool = True
    seed: Optional[int] = Field(None, ge=0, le=MAX_SEED, description="seed of the split (default: the pipeline's seed); "
                                "fusion members share one split while their `seed` varies the initialisation")
    group_by: Optional[str] = Field(None, min_length=1, description="keep all rows with the same value of this column "
                                    "(one person of panel data) in one split; the column is not a feature")

    @model_validator(mode="after")
    def _leave_training_data(self) -> "SplitConfig":
        if self.validation + self.test >= 0.9:
            raise ValueError(f"validation + test must leave at least 10% for training (got {self.validation + self.test:g})")
        return self


class SplitSizes(StrictModel):
    """`max_samples: {train: 1500, validation: 300, test: 800}`: a cap per split (a split not named is not capped)."""

    train: Optional[int] = Field(None, gt=0)
    validation: Optional[int] = Field(None, gt=0)
    test: Optional[int] = Field(None, gt=0)


class DataBase(StrictModel):
    """Keys shared by every data source."""

    split: SplitConfig = Field(default_factory=SplitConfig)
    task: Literal["auto", "classification", "regression"] = "auto"
    target_scaling: Literal["auto", "standard", "none"] = Field(
        "auto", description="regression targets are standardized on train by default (auto); predictions map back")
    max_samples: Optional[Union[Annotated[int, Field(gt=0)], SplitSizes]] = Field(
        None, description="keep at most this many rows of each split (quick runs), or per split: "
        "{train: 1500, validation: 300, test: 800}")

    def max_rows(self, split: str) -> Optional[int]:
        """The cap on split `split` (`train`, `validation`, `test`), or None."""
        if isinstance(self.max_samples, SplitSizes):
            return getattr(self.max_samples, split)
        return self.max_samples

    @property
    def modality(self) -> Modality:
        """`text` when the source names text column(s), else `tabular`: decided here once for every step."""
        return "text" if self.text_columns_list() else "tabular"

    def text_columns_list(self) -> list[str]:
        """The text column, or the pair `text_columns`; empty for a feature table."""
        pair = getattr(self, "text_columns", None)
        if pair:
            return list(pair)
        single = getattr(self, "text_column", None)
        return [single] if single else []

    def preflight(self, base_dir: Path) -> list[tuple[tuple, str]]:
        """Checks that need the file system; returns (key path, message) pairs."""
        return []

    def inferred_task(self) -> str:
        """The task the source itself knows (a bundled dataset), else `auto`."""
        return "auto"

    def load_frame(self, base_dir: Path) -> "tuple[pd.DataFrame, pd.Series, list[Any] | None]":
        """(features, label, class names or None) of a feature table."""
        raise NotImplementedError(f"data source '{getattr(self, 'source', '?')}' gives no feature table")

    def load_text_datasets(self, base_dir: Path) -> Any:
        """The `datasets.DatasetDict` of a text source."""
        raise NotImplementedError(f"data source '{getattr(self, 'source', '?')}' gives no text datasets")


def plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so class labels serialise to JSON and MLflow tags."""
    return value.item() if hasattr(value, "item") else value
