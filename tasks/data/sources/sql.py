"""`source: sql`: a table (or the result of a query) of a database, read through SQLAlchemy and pandas.

`url` is a SQLAlchemy URL: `sqlite:///data/shop.db` (a relative file is resolved against the folder of
pipelines.yaml), `postgresql://user@host:5432/db` (psycopg 3 unless the URL names a driver). `${NAME}` in the URL is
read from the environment when connecting, so a password need not be written in pipelines.yaml; a password written
in the URL is masked (`***`) wherever the config is shown or logged: describe(), messages, MLflow params and the
logged pipeline.yaml.

What the step cache and run reuse key on: a sqlite file's content (`resolved_path`), or the rows a server returns
(`digest`), as a server's table changes without the config changing.
"""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator

from tasks.data.features.spec import TableColumns
from tasks.data.sql_database import SqlDatabase, _first_line, masked_url
from tasks.data.sources.base import DataBase
from tasks.errors import ConfigError, did_you_mean
from tasks.registry import DATA_SOURCES

if TYPE_CHECKING:
    import pandas as pd

#: `read_options` the source sets itself
RESERVED_OPTIONS = ("sql", "con", "table_name", "schema", "chunksize")


@DATA_SOURCES.register
class SqlData(SqlDatabase, TableColumns, DataBase):
    """A database table, or a query's result, read by `pd.read_sql` through SQLAlchemy."""

    source: Literal["sql"]
    table: Optional[str] = Field(None, min_length=1, description="the table (or view) to read; `schema.table` for "
                                 "another schema")
    query: Optional[str] = Field(None, min_length=1, validate_default=True,
                                 description="a SELECT whose result is the table")
    text_column: Optional[str] = None
    text_columns: Optional[list[str]] = Field(None, min_length=2, max_length=2)
    read_options: dict[str, Any] = Field(default_factory=dict, description="passed to pandas.read_sql, e.g. "
                                         "{parse_dates: [day], coerce_float: false} (params: for `query`)")

    _digest: Optional[str] = PrivateAttr(None)

    @field_validator("read_options")
    @classmethod
    def _not_reserved(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = [key for key in RESERVED_OPTIONS if key in value]
        if taken:
            raise ValueError(f"read_options.{taken[0]} is set by the source (the whole table is read; `table: "
                             "schema.name` names a schema); remove it")
        return value

    @field_validator("query")
    @classmethod
    def _table_or_query(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        """Exactly one of `table` and `query` (checked on `query`, so that the message points at a key)."""
        if "table" not in info.data:
            return value  # `table` itself is invalid, and reported
        if info.data["table"] and value:
            raise ValueError("give `table` or `query`, not both")
        if not info.data["table"] and not value:
            raise ValueError("give `table: <name>` (a whole table) or `query: SELECT ...` (its result)")
        return value

    def describe(self) -> str:
        return f"sql:{masked_url(self.url)}#{self.table or 'query'}"

    # -- reading -------------------------------------------------------------------------------------------

    def table_ref(self, connection: Any) -> tuple[Optional[str], str]:
        """(schema, table) of `table`: the name as given, else `schema.table`; a ConfigError naming the tables."""
        import sqlalchemy

        inspector = sqlalchemy.inspect(connection)

        def listed(schema: Optional[str]) -> list[str]:
            try:
                return inspector.get_table_names(schema=schema) + inspector.get_view_names(schema=schema)
            except sqlalchemy.exc.SQLAlchemyError as exc:
                if schema is not None:
                    return []  # no such schema
                raise ConfigError.single(f"cannot read the database at {self.where(connection.engine.url)}: "
                                         f"{self.scrub(_first_line(exc))}", ("url",)) from None

        names = listed(None)
        if self.table in names:
            return None, self.table
        if "." in self.table:
            schema, name = self.table.split(".", 1)
            found = listed(schema)
            if name in found:
                return schema, name
            names = [f"{schema}.{n}" for n in found] or names
        shown = ", ".join(sorted(names)[:30]) + (f", ... ({len(names)} in all)" if len(names) > 30 else "")
        raise ConfigError.single(f"unknown table '{self.table}'{did_you_mean(self.table, names)} "
                                 f"({f'tables: {shown}' if names else 'the database has no tables'})", ("table",))

    def check_options(self) -> None:
        """Every `read_options` key is an option of pd.read_sql, or a ConfigError at that key."""
        import inspect

        import pandas as pd

        known = [p for p in inspect.signature(pd.read_sql).parameters if p not in RESERVED_OPTIONS]
        unknown = [k for k in self.read_options if k not in known]
        if unknown:
            raise ConfigError.single(f"unknown option '{unknown[0]}' of pandas.read_sql"
                                     f"{did_you_mean(unknown[0], known)} (options: {', '.join(known)})",
                                     ("read_options", unknown[0]))

    def reader_options(self, reader: Any) -> dict[str, Any]:
        """The `read_options` that `reader` takes, as pd.read_sql passes its options on for a table or a query."""
        import inspect

        self.check_options()
        takes = inspect.signature(reader).parameters
        return {k: v for k, v in self.read_options.items() if k in takes}

    def read(self, base_dir: Optional[Path]) -> "pd.DataFrame":
        """The whole table (or query result), columns named as strings."""
        import pandas as pd
        import sqlalchemy

        with self.connection(base_dir) as connection:
            try:
                if self.query:
                    frame = pd.read_sql_query(sqlalchemy.text(self.query), connection,
                                              **self.reader_options(pd.read_sql_query))
                else:
                    schema, name = self.table_ref(connection)
                    frame = pd.read_sql_table(name, connection, schema=schema, **self.reader_options(pd.read_sql_table))
            except sqlalchemy.exc.SQLAlchemyError as exc:
                raise ConfigError.single(f"reading {self.describe()} failed: {self.scrub(_first_line(exc))}",
                                         ("query",) if self.query else ("table",)) from None
        return frame.rename(columns=str)

    def columns(self, base_dir: Optional[Path]) -> list[str]:
        """The columns the table (or query) gives, read without its rows (a query: its first few rows)."""
        import sqlalchemy

        with self.connection(base_dir) as connection:
            if self.query:
                try:
                    result = connection.execution_options(stream_results=True).execute(sqlalchemy.text(self.query),
                                                                                       self.read_options.get("params"))
                    result.fetchmany(5)
                    names = [str(c) for c in result.keys()]
                    result.close()
                except sqlalchemy.exc.SQLAlchemyError as exc:
                    raise ConfigError.single(f"the query failed: {self.scrub(_first_line(exc))}", ("query",)) from None
            else:
                schema, name = self.table_ref(connection)
                names = [str(c["name"]) for c in sqlalchemy.inspect(connection).get_columns(name, schema=schema)]
                names = [str(c) for c in self.read_options.get("columns") or names]
        index = self.read_options.get("index_col")
        index = [index] if isinstance(index, str) else list(index or [])
        return [c for c in names if c not in index]

    def preflight(self, base_dir: Path) -> list[tuple[tuple, str]]:
        """The database is reachable, the table (or query) is there and gives the named columns; the data-level
        checks (a label with no values, a column no type fits) run when the run reads the rows."""
        try:
            self.check_options()
            return self.column_issues(self.columns(base_dir))
        except ConfigError as err:
            return [(issue.path, issue.message) for issue in err.issues]

    @property
    def digest(self) -> Optional[str]:
        """Content digest of the rows a database server returns (read once per config object), keying the step
        cache and run reuse; None for sqlite, whose file is digested instead (`resolved_path`)."""
        if self.backend() == "sqlite":
            return None
        if self._digest is None:
            import pandas as pd

            try:
                frame = self.read(None)
                h = hashlib.sha256(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
                h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
                self._digest = h.hexdigest()[:16]
            except Exception:  # noqa: BLE001 - unreadable now: never a cache hit; the data step reports why
                return uuid.uuid4().hex[:16]
        return self._digest

    def load_frame(self, base_dir: Path) -> "tuple[pd.DataFrame, pd.Series, list[Any] | None]":
        try:
            frame = self.read(base_dir)
            issues = self.column_issues(list(frame.columns))
        except ConfigError as err:
            raise ConfigError.single(err.issues[0].message, ("data",) + tuple(err.issues[0].path)) from None
        if issues:
            raise ConfigError.single(issues[0][1], ("data",) + issues[0][0])
        features, label = self.select(frame)
        return features, label, None

    def load_text_datasets(self, base_dir: Path) -> Any:
        """The rows as the split `train` of a `datasets.DatasetDict` (validation and test are carved from it)."""
        import datasets

        try:
            frame = self.read(base_dir)
        except ConfigError as err:
            raise ConfigError.single(err.issues[0].message, ("data",) + tuple(err.issues[0].path)) from None
        return datasets.DatasetDict({"train": datasets.Dataset.from_pandas(frame, preserve_index=False)})
