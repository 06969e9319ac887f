"""`source: hub`: a Hugging Face Hub dataset (or a local dataset folder/script that `datasets.load_dataset` accepts)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import Field

from tasks.data.features.spec import TableColumns
from tasks.data.sources.base import DataBase
from tasks.errors import ConfigError, did_you_mean
from tasks.registry import DATA_SOURCES

if TYPE_CHECKING:
    import pandas as pd


@DATA_SOURCES.register
class HubData(TableColumns, DataBase):
    """A Hugging Face Hub dataset (or a local dataset folder/script that `datasets.load_dataset` accepts)."""

    source: Literal["hub"]
    name: str
    subset: Optional[str] = None
    revision: Optional[str] = None
    splits: Optional[dict[Literal["train", "validation", "test"], str]] = Field(
        None, description="use the dataset's own splits, e.g. {train: train, validation: validation}")
    label_column: str = "label"
    text_column: Optional[str] = None
    text_columns: Optional[list[str]] = Field(None, min_length=2, max_length=2)
    data_files: Optional[Any] = Field(None, description="for file-based builders (csv/json/parquet) on the Hub or disk")

    def describe(self) -> str:
        return f"hub:{self.name}" + (f"/{self.subset}" if self.subset else "")

    def load_hf(self) -> Any:
        """The `datasets.DatasetDict`; network errors become one clear line."""
        import datasets

        try:
            return datasets.load_dataset(self.name, self.subset, revision=self.revision, data_files=self.data_files)
        except Exception as exc:  # noqa: BLE001 - surfaced as a run-time error with the dataset's name
            raise RuntimeError(f"cannot load Hugging Face dataset '{self.name}': {type(exc).__name__}: {exc}") from exc

    def load_frame(self, base_dir: Path) -> "tuple[pd.DataFrame, pd.Series, list[Any] | None]":
        import pandas as pd

        dataset = self.load_hf()
        wanted = list(self.splits.values()) if self.splits else list(dataset.keys())
        frame = pd.concat([dataset[s].to_pandas() for s in wanted], ignore_index=True)
        if self.label_column not in frame.columns:
            raise ConfigError.single(f"unknown column '{self.label_column}'{did_you_mean(self.label_column, frame.columns)}",
                                     ("data", "label_column"))
        issues = self.column_issues([str(c) for c in frame.columns])
        if issues:
            raise ConfigError.single(issues[0][1], ("data",) + issues[0][0])
        features, label = self.select(frame)
        names = None
        feature_info = dataset[wanted[0]].features.get(self.label_column)
        if getattr(feature_info, "names", None):
            names = list(feature_info.names)
        return features, label, names

    def load_text_datasets(self, base_dir: Path) -> Any:
        return self.load_hf()
