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
import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Optional

from pydantic import Field, PrivateAttr, ValidationInfo, field_serializer, field_validator

from tasks.data.features.spec import TableColumns
from tasks.data.sources.base import DataBase
from tasks.errors import ConfigError, did_you_mean
from tasks.registry import DATA_SOURCES

if TYPE_CHECKING:
    import pandas as pd

#: the connect timeout (seconds) of a database server, unless the URL sets `connect_timeout`
CONNECT_TIMEOUT = 5
#: the driver a URL without one gets, per dialect
DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
#: the port a URL without one connects to, per dialect (for messages)
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433, "oracle": 1521}
#: the pip extra that installs a dialect's default driver
EXTRAS = {"postgresql": "fuseflow[postgres]"}
#: `read_options` the source sets itself
RESERVED_OPTIONS = ("sql", "con", "table_name", "schema", "chunksize")
MASK = "***"

# the password part of `dialect+driver://user:password@...`, as SQLAlchemy's own URL parser delimits it
_PASSWORD = re.compile(r"^(?P<head>[\w+]+://[^:/]*:)(?P<password>[^@]*)(?=@)")
_QUERY_SECRET = re.compile(r"(?P<head>[?&](?:password|passwd)=)(?P<password>[^&]*)", re.IGNORECASE)
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: masked URL -> the URL it masks, for configs validated again in this process from their logged form (a fusion
#: reads its members' data sections so); another process gets the masked URL and is told how to give the password
_UNMASKED: dict[str, str] = {}


def masked_url(url: str) -> str:
    """`url` with a password written in it replaced by `***` (a `${NAME}` reference is no secret and is kept)."""

    def hide(match: re.Match) -> str:
        secret = match["password"]
        return match["head"] + (secret if not secret or _REFERENCE.fullmatch(secret) else MASK)

    return _QUERY_SECRET.sub(hide, _PASSWORD.sub(hide, url, count=1))


def _written_passwords(url: str) -> list[str]:
    """The passwords written in `url` (its user's, and `password=` query values)."""
    return [m["password"] for m in (_PASSWORD.match(url), *_QUERY_SECRET.finditer(url)) if m]


def _first_line(exc: BaseException) -> str:
    """The driver's own message (SQLAlchemy wraps it with the statement and a link), first line."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip() or type(inner).__name__
    return text.splitlines()[0].strip()


@DATA_SOURCES.register
class SqlData(TableColumns, DataBase):
    """A database table, or a query's result, read by `pd.read_sql` through SQLAlchemy."""

    source: Literal["sql"]
    url: str = Field(min_length=1, description="SQLAlchemy URL, e.g. sqlite:///data/shop.db (relative to the folder "
                     "of pipelines.yaml) or postgresql://user:${PGPASS}@host:5432/db (${NAME}: from the environment)")
    table: Optional[str] = Field(None, min_length=1, description="the table (or view) to read; `schema.table` for "
                                 "another schema")
    query: Optional[str] = Field(None, min_length=1, validate_default=True,
                                 description="a SELECT whose result is the table")
    text_column: Optional[str] = None
    text_columns: Optional[list[str]] = Field(None, min_length=2, max_length=2)
    read_options: dict[str, Any] = Field(default_factory=dict, description="passed to pandas.read_sql, e.g. "
                                         "{parse_dates: [day], coerce_float: false} (params: for `query`)")

    _digest: Optional[str] = PrivateAttr(None)

    @field_validator("url")
    @classmethod
    def _parses(cls, value: str) -> str:
        value = _UNMASKED.get(value, value)
        from sqlalchemy.engine import make_url

        try:
            make_url(value)
        except Exception:  # noqa: BLE001 - the message would quote the URL, password included
            raise ValueError("`url` is not a SQLAlchemy URL: write dialect[+driver]://user:password@host:port/"
                             "database, e.g. sqlite:///data/shop.db or postgresql://me@db.example.com:5432/sales"
                             ) from None
        return value

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

    @field_serializer("url")
    def _masked(self, url: str) -> str:
        masked = masked_url(url)
        if masked != url:
            _UNMASKED[masked] = url
        return masked

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, (masked_url(value) if key == "url" else value)

    def describe(self) -> str:
        return f"sql:{masked_url(self.url)}#{self.table or 'query'}"

    def scrub(self, text: str) -> str:
        """`text` with the password (written, or read from the environment) replaced by `***`."""
        for secret in self._secrets():
            text = text.replace(secret, MASK)
        return text

    def _secrets(self) -> list[str]:
        from urllib.parse import quote, quote_plus, unquote

        found = _written_passwords(self.url) + [os.environ.get(name, "") for name in _REFERENCE.findall(self.url)]
        found = [s for s in found if s and s != MASK and not _REFERENCE.fullmatch(s)]
        forms = {v for s in found for v in (s, unquote(s), quote(s, safe=""), quote_plus(s))}
        return sorted((v for v in forms if len(v) > 1), key=len, reverse=True)

    # -- connecting ----------------------------------------------------------------------------------------

    def backend(self) -> str:
        """The dialect: sqlite, postgresql, mysql, ..."""
        name = self.url.split(":", 1)[0].split("+", 1)[0]
        return "postgresql" if name == "postgres" else name

    def resolved_url(self, base_dir: Optional[Path]) -> Any:
        """The SQLAlchemy URL to connect to: `${NAME}`s filled in, the default driver, a sqlite file made absolute."""
        from sqlalchemy.engine import make_url

        if MASK in _written_passwords(self.url):
            raise ConfigError.single("the password in `url` is masked (`***`): this config was read from a logged "
                                     "run; give the password as `${NAME}` in `url` (read from the environment), or "
                                     "for PostgreSQL in PGPASSWORD or ~/.pgpass", ("url",))
        url = make_url(self.url)
        missing = sorted({n for n in _REFERENCE.findall(self.url) if n not in os.environ})
        if missing:
            raise ConfigError.single(f"environment variable {missing[0]} (named in `url` as ${{{missing[0]}}}) is "
                                     "not set", ("url",))

        def filled(value: Any) -> Any:
            return _REFERENCE.sub(lambda m: os.environ[m[1]], value) if isinstance(value, str) else value

        driver = DEFAULT_DRIVERS.get(url.drivername, url.drivername)
        if driver.startswith("postgres+"):
            driver = "postgresql+" + driver.split("+", 1)[1]
        query = {k: (tuple(map(filled, v)) if isinstance(v, tuple) else filled(v)) for k, v in url.query.items()}
        url = url.set(drivername=driver, username=filled(url.username), password=filled(url.password),
                      host=filled(url.host), database=filled(url.database), query=query)
        if url.get_backend_name() == "sqlite":
            path = self.sqlite_path(base_dir, url.database)
            url = url.set(database=str(path))
        return url

    def sqlite_path(self, base_dir: Optional[Path], database: Optional[str] = None) -> Path:
        """The sqlite file (relative paths are resolved against the folder of pipelines.yaml)."""
        if database is None:
            from sqlalchemy.engine import make_url

            database = make_url(self.url).database
        if not database or database == ":memory:" or database.startswith("file:"):
            raise ConfigError.single("a sqlite `url` names the database file: sqlite:///data/shop.db (relative to "
                                     "the folder of pipelines.yaml) or sqlite:////abs/path/shop.db", ("url",))
        path = Path(_REFERENCE.sub(lambda m: os.environ.get(m[1], m[0]), database)).expanduser()
        return (path if path.is_absolute() else Path(base_dir or ".") / path).resolve()

    def resolved_path(self, base_dir: Path) -> Any:
        """The sqlite file, whose content keys the step cache; a server's masked URL (its `digest` keys instead)."""
        if self.backend() == "sqlite":
            try:
                return self.sqlite_path(base_dir)
            except ConfigError:
                return masked_url(self.url)
        return masked_url(self.url)

    def where(self, url: Any) -> str:
        """`host:port/database` (or the sqlite file) of `url`, without the password, for messages."""
        if url.get_backend_name() == "sqlite":
            return str(url.database)
        port = url.port or DEFAULT_PORTS.get(url.get_backend_name())
        return f"{url.host or 'localhost'}{f':{port}' if port else ''}" + (f"/{url.database}" if url.database else "")

    @contextmanager
    def connection(self, base_dir: Optional[Path]) -> Iterator[Any]:
        """An open connection; every problem before the first query is a ConfigError at `url`, in one line."""
        import sqlalchemy
        from sqlalchemy.exc import NoSuchModuleError

        url = self.resolved_url(base_dir)
        backend = url.get_backend_name()
        if backend == "sqlite" and not Path(url.database).is_file():  # sqlite would create an empty file
            raise ConfigError.single(f"sqlite database not found: {url.database} (a relative path in `url` is "
                                     f"resolved against {Path(base_dir or '.').resolve()}, the folder of "
                                     "pipelines.yaml)", ("url",))
        connect_args = {}
        if backend in ("postgresql", "mysql") and "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT
        try:
            engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
        except NoSuchModuleError:
            raise ConfigError.single(f"unknown database dialect or driver '{url.drivername}' (SQLAlchemy has no "
                                     "such plugin); e.g. sqlite, postgresql, postgresql+psycopg, mysql+pymysql",
                                     ("url",)) from None
        except ImportError as exc:
            fix = f"pip install '{EXTRAS[backend]}'" if backend in EXTRAS else f"pip install {exc.name or 'the driver'}"
            raise ConfigError.single(f"the {url.drivername} driver is not installed ({self.scrub(_first_line(exc))}): "
                                     f"{fix}", ("url",)) from None
        try:
            try:
                connection = engine.connect()
            except sqlalchemy.exc.DBAPIError as exc:
                raise ConfigError.single(f"cannot connect to {backend} at {self.where(url)}"
                                         f"{f' as {url.username}' if url.username else ''}: "
                                         f"{self.scrub(_first_line(exc))}", ("url",)) from None
            with connection:
                yield connection
        finally:
            engine.dispose()

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
