"""`source: csv | json | parquet`: a local table; relative paths are resolved against the folder of pipelines.yaml."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

from pydantic import Field, model_validator

from tasks.data.sources.base import DataBase
from tasks.errors import ConfigError, did_you_mean
from tasks.registry import DATA_SOURCES

if TYPE_CHECKING:
    import pandas as pd


class FileData(DataBase):
    """A local table; relative paths are resolved against the folder of pipelines.yaml."""

    path: str
    label_column: str
    features: Optional[list[str]] = Field(None, min_length=1, description="feature columns (default: all but the label)")
    text_column: Optional[str] = None
    text_columns: Optional[list[str]] = Field(None, min_length=2, max_length=2)
    read_options: dict[str, Any] = Field(default_factory=dict, description="passed to pandas' reader")

    #: the `datasets` builder that reads this format (text pipelines load files through `datasets`)
    builder: ClassVar[str] = ""

    @model_validator(mode="after")
    def _label_is_not_a_feature(self) -> "FileData":
        if self.features and self.label_column in self.features:
            raise ValueError(f"`features` lists the label column '{self.label_column}': a model would learn its own "
                             "target; remove it from `features`")
        return self

    def describe(self) -> str:
        return f"{self.source}:{self.path}"

    def resolved_path(self, base_dir: Path) -> Path:
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else (base_dir / path)

    def read(self, path: Path, nrows: int | None = None) -> "pd.DataFrame":
        raise NotImplementedError

    def columns(self, base_dir: Path) -> list[str]:
        return [str(c) for c in self.read(self.resolved_path(base_dir), nrows=5).columns]

    def preflight(self, base_dir: Path) -> list[tuple[tuple, str]]:
        path = self.resolved_path(base_dir)
        if not path.is_file():
            return [(("path",), f"file not found: {path} (relative paths are resolved against {base_dir})")]
        try:
            columns = self.columns(base_dir)
        except Exception as exc:  # noqa: BLE001 - any reader error is a config problem of this file
            return [(("path",), f"cannot read {path} as {self.source}: {exc}")]
        issues = []
        wanted: list[tuple[tuple, str]] = [(("label_column",), self.label_column)]
        wanted += [(("features", i), c) for i, c in enumerate(self.features or [])]
        if self.text_column:
            wanted.append((("text_column",), self.text_column))
        wanted += [(("text_columns", i), c) for i, c in enumerate(self.text_columns or [])]
        for key, column in wanted:
            if column not in columns:
                issues.append((key, f"unknown column '{column}'{did_you_mean(column, columns)} (columns: {', '.join(columns)})"))
        return issues

    def load_frame(self, base_dir: Path) -> "tuple[pd.DataFrame, pd.Series, list[Any] | None]":
        frame = self.read(self.resolved_path(base_dir))
        label = frame[self.label_column]
        features = frame[self.features] if self.features else frame.drop(columns=[self.label_column])
        non_numeric = [c for c in features.columns if not _is_numeric(features[c])]
        if non_numeric:
            raise ConfigError.single(
                f"non-numeric feature columns {non_numeric}: list numeric columns in `features`, "
                "or use `text_column` for text", ("data", "features"))
        return features, label, None

    def reader_options(self) -> dict[str, Any]:
        """`read_options` as `datasets`' builder takes them."""
        return dict(self.read_options)

    def load_text_datasets(self, base_dir: Path) -> Any:
        """The file as the split `train` of a `datasets.DatasetDict` (validation and test are carved from it)."""
        import datasets

        path = self.resolved_path(base_dir)
        if not path.is_file():
            raise ConfigError.single(f"file not found: {path}", ("data", "path"))
        try:
            return datasets.load_dataset(self.builder, data_files={"train": str(path)}, **self.reader_options())
        except Exception as exc:  # noqa: BLE001 - one line naming the file; the traceback goes to the log
            raise RuntimeError(f"cannot load {path} with datasets' {self.builder} reader: {type(exc).__name__}: "
                               f"{exc}".splitlines()[0]) from exc


def _is_numeric(series: "pd.Series") -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


@DATA_SOURCES.register
class CsvData(FileData):
    source: Literal["csv"]
    builder: ClassVar[str] = "csv"

    def read(self, path: Path, nrows: int | None = None) -> "pd.DataFrame":
        import pandas as pd

        return pd.read_csv(path, nrows=nrows, **self.read_options)


@DATA_SOURCES.register
class JsonData(FileData):
    """JSON records, or JSON Lines when the file ends in .jsonl."""

    source: Literal["json"]
    builder: ClassVar[str] = "json"

    def read(self, path: Path, nrows: int | None = None) -> "pd.DataFrame":
        import pandas as pd

        lines = self.read_options.get("lines", path.suffix == ".jsonl")
        options = {k: v for k, v in self.read_options.items() if k != "lines"}
        frame = pd.read_json(path, lines=lines, **options)
        return frame.head(nrows) if nrows else frame

    def reader_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.read_options.items() if k != "lines"}  # the json builder reads JSON Lines itself


@DATA_SOURCES.register
class ParquetData(FileData):
    source: Literal["parquet"]
    builder: ClassVar[str] = "parquet"

    def read(self, path: Path, nrows: int | None = None) -> "pd.DataFrame":
        import pandas as pd

        frame = pd.read_parquet(path, **self.read_options)
        return frame.head(nrows) if nrows else frame
