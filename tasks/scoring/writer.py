"""Where predictions go, written whole or not at all: a file is written beside its final name and renamed into place
when the last batch is in (a failed run leaves no file, and never a half one); a SQL table is written in one
transaction, rolled back on failure. `append` to a table checks its columns before the first row is scored."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from tasks.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

WHERE = ("predict", "output")


class FileSink:
    """Batches appended to `<name>.partial-<id>`, renamed to `path` by `commit()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
        self.parquet = path.suffix.lower() == ".parquet"
        self._writer: Any = None
        self.rows = 0

    def check(self, columns: list[str]) -> None:
        if not self.path.parent.is_dir():
            raise ConfigError.single(f"the output folder does not exist: {self.path.parent} (create it, or change "
                                     "`predict.output.path`)", WHERE + ("path",))
        if not os.access(self.path.parent, os.W_OK):
            raise ConfigError.single(f"the output folder is not writable: {self.path.parent}", WHERE + ("path",))

    def write(self, frame: "pd.DataFrame") -> None:
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.partial, table.schema)
            self._writer.write_table(table.cast(self._writer.schema))
        else:
            frame.to_csv(self.partial, mode="a", header=self.rows == 0, index=False)
        self.rows += len(frame)

    def commit(self) -> str:
        if self._writer is not None:
            self._writer.close()
        if self.rows == 0 and not self.partial.exists():
            self.partial.write_text("", encoding="utf-8")
        os.replace(self.partial, self.path)
        return str(self.path.resolve())

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass
        self.partial.unlink(missing_ok=True)


class SqlSink:
    """Batches inserted into `table` in one transaction of `connection` (replace: the table is recreated in it)."""

    def __init__(self, connection: Any, table: str, mode: str, describe: str) -> None:
        self.connection, self.table, self.mode, self.where = connection, table, mode, describe
        self.transaction = connection.begin()
        self.rows = 0

    def check(self, columns: list[str]) -> None:
        import sqlalchemy

        inspector = sqlalchemy.inspect(self.connection)
        if self.mode != "append" or not inspector.has_table(self.table):
            return
        existing = [c["name"] for c in inspector.get_columns(self.table)]
        if existing != columns:
            raise ConfigError.single(
                f"output table '{self.table}' has columns {existing}, but this scoring writes {columns}: use "
                "`mode: replace`, another `table`, or `outputs`/`keep_columns` that match it", WHERE + ("table",))

    def write(self, frame: "pd.DataFrame") -> None:
        if_exists = "replace" if self.mode == "replace" and self.rows == 0 else "append"
        frame.to_sql(self.table, self.connection, if_exists=if_exists, index=False)
        self.rows += len(frame)

    def commit(self) -> str:
        self.transaction.commit()
        return self.where

    def abort(self) -> None:
        self.transaction.rollback()


@contextmanager
def open_sink(output: Any, base_dir: Path, values: dict[str, str]) -> Iterator[Any]:
    """The sink for `output`; committed when the block ends normally, else aborted (nothing left behind)."""
    if hasattr(output, "url"):
        table = output.table.format(**values)
        with output.connection(base_dir, create=True) as connection:
            sink = SqlSink(connection, table, output.mode, f"{output.describe().split('#')[0]}#{table}")
            try:
                yield sink
            except BaseException:
                sink.abort()
                raise
        return
    sink = FileSink(output.resolved(base_dir, values))
    try:
        yield sink
    except BaseException:
        sink.abort()
        raise
