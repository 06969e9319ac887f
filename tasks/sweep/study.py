"""The Optuna study behind a sweep: where it is stored, and opening it with the sweep's sampler and pruner.

By default the study lives in sqlite under the project's state folder (`.fuseflow/sweeps/optuna.db`), or, when
MLflow's store is a PostgreSQL database, in a schema of its own (`fuseflow_optuna`) of that database, so workers
that reach the MLflow database reach the study too. (Never in MLflow's own tables: both use Alembic's version
table.) `sweep.storage` names any other SQLAlchemy URL. One study per sweep run: a `--resume` reopens the run and
with it the study, which keeps every trial the interrupted attempt finished or pruned."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tasks.paths import STATE_DIR

STUDY_FILE = STATE_DIR / "sweeps" / "optuna.db"
POSTGRES_SCHEMA = "fuseflow_optuna"


@dataclass(frozen=True)
class StudyRef:
    """What any process needs to open the study: its storage URL and name (picklable, for cluster workers)."""

    storage: str
    name: str


def study_storage(configured: Optional[str], tracking_uri: str, base_dir: Path) -> str:
    """The study's SQLAlchemy URL: `sweep.storage`, else a schema of MLflow's PostgreSQL database, else sqlite in
    the project's state folder (absolute, so every worker process opens the same file)."""
    if configured:
        return configured
    if urlsplit(tracking_uri).scheme.split("+")[0] in ("postgresql", "postgres"):
        return _with_search_path(tracking_uri, POSTGRES_SCHEMA)
    path = (Path(base_dir) / STUDY_FILE).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _with_search_path(url: str, schema: str) -> str:
    """`url` whose connections use `schema` (PostgreSQL's `options=-csearch_path=...`)."""
    parts = urlsplit(url)
    scheme = "postgresql" + parts.scheme[len(parts.scheme.split("+")[0]):]
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"] + [("options", f"-csearch_path={schema}")]
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def masked_url(url: str) -> str:
    """`url` with its password replaced by `***` (for tags and logs)."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def open_storage(url: str) -> Any:
    """Optuna's RDB storage on `url` (the schema created first on PostgreSQL; sqlite waits up to 60 s for a
    writer, as concurrent trials report at once)."""
    import optuna

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif _search_path(url):
        _create_schema(url, _search_path(url))
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def _search_path(url: str) -> Optional[str]:
    """The schema a PostgreSQL URL's `options=-csearch_path=...` selects, if any."""
    if not urlsplit(url).scheme.startswith("postgres"):
        return None
    options = dict(parse_qsl(urlsplit(url).query)).get("options", "")
    return options.split("search_path=", 1)[1].split()[0] if "search_path=" in options else None


def _create_schema(url: str, schema: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()


def open_study(ref: StudyRef, sweep: Any, epochs: int, seed: int) -> Any:
    """The sweep's study (created on first use, reopened by a resume) with its sampler and pruner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # fuseflow logs each trial itself
    return optuna.create_study(storage=open_storage(ref.storage), study_name=ref.name, load_if_exists=True,
                               sampler=sweep.resolved_sampler.build(sweep.sampler_seed(seed)),
                               pruner=sweep.pruner.build(epochs),
                               direction="maximize" if sweep.resolved_mode == "max" else "minimize")
