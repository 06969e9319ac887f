"""`source: csv | json | parquet`: a table file; relative paths are resolved against the folder of pipelines.yaml, fsspec
URLs pass through to pandas."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

from pydantic import Field

from tasks.data.features.spec import TableColumns
from tasks.data.sources.base import DataBase
from tasks.errors import ConfigError
from tasks.registry import DATA_SOURCES

if TYPE_CHECKING:
    import pandas as pd


class FileData(TableColumns, DataBase):
    """A table read by pandas: a local path (relative paths are resolved against the folder of pipelines.yaml), or
    an fsspec URL (`s3://`, `gs://`, `https://`) that pandas reads when the filesystem package is installed."""

    path: str
    text_column: Optional[str] = None
    text_columns: Optional[list[str]] = Field(None, min_length=2, max_length=2)
    read_options: dict[str, Any] = Field(default_factory=dict, description="passed to pandas' reader")

    #: the `datasets` builder that reads this format (text pipelines load files through `datasets`)
    builder: ClassVar[str] = ""

    def describe(self) -> str:
        return f"{self.source}:{self.path}"

    def is_url(self) -> bool:
        """`s3://bucket/x.csv`, `https://...`: read by pandas through fsspec, not resolved against the project."""
        return "://" in self.path and not self.path.startswith("file://")

    def resolved_path(self, base_dir: Path) -> Any:
        if self.is_url():
            return self.path
        path = Path(self.path.removeprefix("file://")).expanduser()
        return path if path.is_absolute() else (base_dir / path)

    def read(self, path: Any, nrows: int | None = None) -> "pd.DataFrame":
        raise NotImplementedError

    def columns(self, base_dir: Path) -> list[str]:
        return [str(c) for c in self.read(self.resolved_path(base_dir), nrows=5).columns]

    def preflight(self, base_dir: Path) -> list[tuple[tuple, str]]:
        path = self.resolved_path(base_dir)
        if self.is_url():
            return []  # a remote table is read (and checked) by the run, with the user's credentials
        if not path.is_file():
            return [(("path",), f"file not found: {path} (relative paths are resolved against {base_dir})")]
        try:
            frame = self.read(path, nrows=5 if self.modality == "text" else None)
        except Exception as exc:  # noqa: BLE001 - any reader error is a config problem of this file
            return [(("path",), f"cannot read {path} as {self.source}: {exc}")]
        issues = self.column_issues([str(c) for c in frame.columns])
        if not issues and frame.empty:
            return [(("path",), f"{path} has no rows (only a header): there is nothing to train on; point `path` at "
                     "a file with data rows")]
        return issues or self.table_issues(frame.rename(columns=str))

    def load_frame(self, base_dir: Path) -> "tuple[pd.DataFrame, pd.Series, list[Any] | None]":
        try:
            frame = self.read(self.resolved_path(base_dir)).rename(columns=str)
        except ImportError as exc:  # fsspec URL without its filesystem package
            raise ConfigError.single(f"cannot read {self.path}: {exc}", ("data", "path")) from None
        issues = self.column_issues(list(frame.columns))
        if issues:
            raise ConfigError.single(issues[0][1], ("data",) + issues[0][0])
        features, label = self.select(frame)
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


@DATA_SOURCES.register
class CsvData(FileData):
    source: Literal["csv"]
    builder: ClassVar[str] = "csv"

    def read(self, path: Any, nrows: int | None = None) -> "pd.DataFrame":
        import pandas as pd

        return pd.read_csv(path, nrows=nrows, **self.read_options)


@DATA_SOURCES.register
class JsonData(FileData):
    """JSON records, or JSON Lines when the file ends in .jsonl."""

    source: Literal["json"]
    builder: ClassVar[str] = "json"

    def read(self, path: Any, nrows: int | None = None) -> "pd.DataFrame":
        import pandas as pd

        lines = self.read_options.get("lines", str(path).endswith(".jsonl"))
        options = {k: v for k, v in self.read_options.items() if k != "lines"}
        frame = pd.read_json(path, lines=lines, **options)
        return frame.head(nrows) if nrows else frame

    def reader_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.read_options.items() if k != "lines"}  # the json builder reads JSON Lines itself


@DATA_SOURCES.register
class ParquetData(FileData):
    source: Literal["parquet"]
    builder: ClassVar[str] = "parquet"

    def read(self, path: Any, nrows: int | None = None) -> "pd.DataFrame":
        import pandas as pd

        frame = pd.read_parquet(path, **self.read_options)
        return frame.head(nrows) if nrows else frame
