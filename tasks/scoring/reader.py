"""The rows to score, in batches of `batch_size`: CSV and JSON lines by pandas' chunked readers, Parquet by row
groups through pyarrow, SQL by a streaming cursor; nothing is read whole."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from tasks.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd


def input_columns(data: Any, base_dir: Path) -> list[str]:
    """The column names of the input, from its first rows; a ConfigError at `predict.data` when it cannot be read."""
    for batch in batches(data, base_dir, 5):
        return [str(c) for c in batch.columns]
    raise ConfigError.single(f"no rows to score in {data.describe()}", ("predict", "data"))


def batches(data: Any, base_dir: Path, size: int) -> Iterator["pd.DataFrame"]:
    """The input's rows, `size` at a time, columns named as strings."""
    reader = _sql_batches if data.source == "sql" else _file_batches
    for batch in reader(data, base_dir, size):
        yield batch.rename(columns=str)


def _file_batches(data: Any, base_dir: Path, size: int) -> Iterator["pd.DataFrame"]:
    import pandas as pd

    path = data.resolved(base_dir)
    if not path.is_file():
        raise ConfigError.single(f"file not found: {path} (relative paths are resolved against {base_dir})",
                                 ("predict", "data", "path"))
    try:
        if data.source == "parquet":
            import pyarrow.parquet as pq

            for record_batch in pq.ParquetFile(path).iter_batches(batch_size=size, **data.read_options):
                yield record_batch.to_pandas()
            return
        if data.source == "csv":
            chunks = pd.read_csv(path, chunksize=size, **data.read_options)
        else:
            chunks = pd.read_json(path, lines=True, chunksize=size, **data.read_options)
        with chunks as reader:
            yield from reader
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ConfigError.single(f"cannot read {path} as {data.source}: {str(exc).splitlines()[0]}",
                                 ("predict", "data", "path")) from None


def _sql_batches(data: Any, base_dir: Path, size: int) -> Iterator["pd.DataFrame"]:
    import pandas as pd
    import sqlalchemy

    with data.connection(base_dir) as connection:
        streaming = connection.execution_options(stream_results=True)
        try:
            if data.query:
                chunks = pd.read_sql_query(sqlalchemy.text(data.query), streaming, chunksize=size, **data.read_options)
            else:
                chunks = pd.read_sql_table(data.table, streaming, chunksize=size, **data.read_options)
            yield from chunks
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
            raise ConfigError.single(f"reading {data.describe()} failed: {data.scrub(str(exc).splitlines()[0])}",
                                     ("predict", "data", "query" if data.query else "table")) from None
