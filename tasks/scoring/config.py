"""The `predict:` section of a scoring pipeline: which model, the rows to score, where the predictions go."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from tasks.data.sql_database import SqlDatabase
from tasks.registry import StrictModel
from tasks.scoring.drift import DriftConfig

#: `{...}` placeholders an output path or table may hold
PLACEHOLDERS = ("date", "time", "run_id", "pipeline")


class FileInput(StrictModel):
    """Rows in a CSV, JSON-lines or Parquet file, read in batches (never whole)."""

    source: Literal["csv", "json", "parquet"]
    path: str = Field(min_length=1, description="relative to the folder of pipelines.yaml")
    label_column: Optional[str] = Field(None, description="when present, the scoring run logs metrics against it")
    read_options: dict[str, Any] = Field(default_factory=dict, description="passed to pandas' reader")

    def resolved(self, base_dir: Path) -> Path:
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else base_dir / path

    def describe(self) -> str:
        return f"{self.source}:{self.path}"


class SqlInput(SqlDatabase):
    """Rows of a database table or query, fetched in batches."""

    source: Literal["sql"]
    table: Optional[str] = Field(None, min_length=1)
    query: Optional[str] = Field(None, min_length=1)
    label_column: Optional[str] = None
    read_options: dict[str, Any] = Field(default_factory=dict, description="passed to pandas.read_sql")

    @model_validator(mode="after")
    def _table_or_query(self) -> "SqlInput":
        if bool(self.table) == bool(self.query):
            raise ValueError("give `table: <name>` or `query: SELECT ...` (one of them)")
        return self

    def describe(self) -> str:
        from tasks.data.sql_database import masked_url

        return f"sql:{masked_url(self.url)}#{self.table or 'query'}"


class FileOutput(StrictModel):
    """`output: {path: scores/{date}.csv}`: a CSV or Parquet file, written beside and renamed into place at the end."""

    path: str = Field(min_length=1, description="`.csv` or `.parquet`; may hold {date}, {time}, {run_id}, {pipeline}")

    @field_validator("path")
    @classmethod
    def _format(cls, value: str) -> str:
        _check_placeholders(value)
        if Path(value).suffix.lower() not in (".csv", ".parquet"):
            raise ValueError(f"the output file must end in .csv or .parquet (got {Path(value).name!r})")
        return value

    def resolved(self, base_dir: Path, values: dict[str, str]) -> Path:
        path = Path(self.path.format(**values)).expanduser()
        return path if path.is_absolute() else base_dir / path

    def describe(self) -> str:
        return self.path


class SqlOutput(SqlDatabase):
    """`output: {url: ..., table: scores, mode: append}`: rows written in one transaction (all or none)."""

    table: str = Field(min_length=1, description="may hold {date}, {run_id}, {pipeline}")
    mode: Literal["append", "replace"] = "append"

    _placeholders = field_validator("table")(classmethod(lambda cls, v: _check_placeholders(v)))

    def describe(self) -> str:
        from tasks.data.sql_database import masked_url

        return f"{masked_url(self.url)}#{self.table}"


def _check_placeholders(value: str) -> str:
    import string

    try:
        names = [field for _, field, _, _ in string.Formatter().parse(value) if field is not None]
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc} (write a literal brace as {{{{ or }}}})") from None
    unknown = [n for n in names if n not in PLACEHOLDERS]
    if unknown:
        raise ValueError(f"unknown placeholder {{{unknown[0]}}} (known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
    return value


def _output_kind(value: Any) -> str:
    """`sql` for a mapping (validating) or a model (serializing) with a `url`, else `file`."""
    has_url = "url" in value if isinstance(value, dict) else hasattr(value, "url")
    return "sql" if has_url else "file"


ScoringInput = Annotated[Union[FileInput, SqlInput], Field(discriminator="source")]
ScoringOutput = Annotated[Union[Annotated[FileOutput, Tag("file")], Annotated[SqlOutput, Tag("sql")]],
                          Discriminator(_output_kind)]


class ScoringConfig(StrictModel):
    """`predict: {model: models:/NAME@champion, data: {...}, output: {...}, batch_size, outputs, keep_columns}`."""

    model: str = Field(min_length=1, description="an MLflow model URI: models:/NAME@ALIAS, models:/NAME/VERSION, "
                       "runs:/RUN_ID/model")
    data: ScoringInput
    output: ScoringOutput
    batch_size: int = Field(10_000, ge=1, le=10_000_000, description="rows read, predicted and written at a time")
    outputs: list[Literal["label", "proba"]] = Field(default_factory=lambda: ["label"], min_length=1,
                                                     description="label (or a regression's prediction), and/or "
                                                     "proba (proba_<class> per class)")
    keep_columns: list[str] = Field(default_factory=list, description="input columns copied into the output (ids)")
    drift: DriftConfig = Field(default_factory=DriftConfig)

    @field_validator("model")
    @classmethod
    def _uri(cls, value: str) -> str:
        from tasks.scoring.model import parse_model_uri

        parse_model_uri(value)  # a ValueError says what a URI looks like
        return value

    @field_validator("outputs")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    def preflight(self, base_dir: Path) -> list[tuple[tuple, str]]:
        """The input file is there and the output's folder too (a SQL input or output is checked when it opens)."""
        issues: list[tuple[tuple, str]] = []
        if isinstance(self.data, FileInput) and not self.data.resolved(base_dir).is_file():
            issues.append((("data", "path"), f"file not found: {self.data.resolved(base_dir)} (relative paths are "
                                             f"resolved against {base_dir})"))
        if isinstance(self.output, FileOutput):
            folder = Path(self.output.path).parent
            if "{" not in str(folder):
                resolved = folder if folder.is_absolute() else base_dir / folder
                if not resolved.is_dir():
                    issues.append((("output", "path"), f"the output folder does not exist: {resolved} (create it, "
                                                       "or change the path)"))
        return issues
