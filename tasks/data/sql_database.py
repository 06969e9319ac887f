"""A database named by a SQLAlchemy URL: the `url` key every SQL location shares (the `sql` data source, a
scoring pipeline's SQL input and output), how to connect, and the password kept out of everything shown or logged.

`sqlite:///data/shop.db` is resolved against the folder of pipelines.yaml; `postgresql://user@host:5432/db` uses
psycopg 3 unless the URL names a driver; `${NAME}` in the URL is read from the environment when connecting."""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from pydantic import Field, field_serializer, field_validator

from tasks.errors import ConfigError
from tasks.registry import StrictModel

#: the connect timeout (seconds) of a database server, unless the URL sets `connect_timeout`
CONNECT_TIMEOUT = 5
#: the driver a URL without one gets, per dialect
DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
#: the port a URL without one connects to, per dialect (for messages)
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433, "oracle": 1521}
#: the pip extra that installs a dialect's default driver
EXTRAS = {"postgresql": "fuseflow[postgres]"}
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



class SqlDatabase(StrictModel):
    """`url`: a database to connect to, with its password masked wherever the config is shown or logged."""

    url: str = Field(min_length=1, description="SQLAlchemy URL, e.g. sqlite:///data/shop.db (relative to the folder "
                     "of pipelines.yaml) or postgresql://user:${PGPASS}@host:5432/db (${NAME}: from the environment)")
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

    @field_serializer("url")
    def _masked(self, url: str) -> str:
        masked = masked_url(url)
        if masked != url:
            _UNMASKED[masked] = url
        return masked

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, (masked_url(value) if key == "url" else value)

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
    def connection(self, base_dir: Optional[Path], create: bool = False) -> Iterator[Any]:
        """An open connection; every problem before the first query is a ConfigError at `url`, in one line. With
        `create`, a sqlite file that does not exist yet is created (an output), in a folder that must exist."""
        import sqlalchemy
        from sqlalchemy.exc import NoSuchModuleError

        url = self.resolved_url(base_dir)
        backend = url.get_backend_name()
        if backend == "sqlite" and create and not Path(url.database).parent.is_dir():
            raise ConfigError.single(f"the folder of the sqlite database does not exist: {Path(url.database).parent}",
                                     ("url",))
        if backend == "sqlite" and not create and not Path(url.database).is_file():  # sqlite would create a file
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
