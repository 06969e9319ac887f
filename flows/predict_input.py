"""The rows `fuseflow predict` reads: a CSV, JSON (records) or JSON Lines file, or a .txt file of texts, matched to the
model's features by column name, every cell checked, so that a row the model would silently get wrong (a missing or
reordered column, a string or NaN cell) is refused with its row, line and column instead."""
from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tasks.errors import ConfigError, ConfigIssue

MISSING = {"", "na", "n/a", "nan", "null", "none"}  #: cells that stand for "no value" (case-insensitive)
MAX_SHOWN = 5  #: cell problems listed one a line before "... and N more"


@dataclass
class Rows:
    """The cells of an input file: column names (None for a file without them), rows of raw cells, and the file line
    where each row starts (None where the format has no lines to point at)."""

    source: str
    kind: str  # csv | json | jsonl | txt
    columns: list[str] | None
    cells: list[list[Any]]
    lines: list[int] | None
    header: list[str] | None = None  # a CSV's first row and its line, kept in case it turns out to be data
    header_line: int = 1

    def line(self, row: int) -> int | None:
        """The file line where the `row`-th (0-based) data row starts, where the format has lines."""
        return self.lines[row] if self.lines else None


def fail(source: str, message: str, line: int | None = None) -> ConfigError:
    """A one-line error about the input file (the CLI prints it and exits 2)."""
    return ConfigError([ConfigIssue(message, file=source, line=line)])


def read_rows(path: Path) -> Rows:
    """The rows of a CSV, JSON/JSON Lines or .txt file; unreadable, empty or malformed files raise ConfigError."""
    source = str(path)
    if path.is_dir():
        raise fail(source, "is a folder, not a file of rows")
    if not path.is_file():
        raise ConfigError.single(f"input file not found: {path}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise fail(source, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(source, f"not valid UTF-8: byte 0x{raw[exc.start]:02x}", raw.count(b"\n", 0, exc.start) + 1) from None
    if not text.strip():
        raise fail(source, "the file is empty (expected one row per prediction)")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        numbered = [(i + 1, line) for i, line in enumerate(text.split("\n")) if line.strip()]
        return Rows(source, "txt", ["text"], [[line] for _, line in numbered], [i for i, _ in numbered])
    if suffix == ".jsonl":
        return _json_lines(text, source)
    if suffix == ".json":
        return _json(text, source)
    return _csv(text, source)


def _csv(text: str, source: str) -> Rows:
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            if row:  # an empty line is no row (pandas skips it too); a row of empty cells is a row
                records.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise fail(source, f"cannot read it as CSV: {exc}", reader.line_num) from None
    (header_line, header), data = records[0], records[1:]
    if len(header) > 1:  # a line of spaces cannot be a row of several columns
        data = [(line, row) for line, row in data if len(row) > 1 or row[0].strip()]
    for line, row in data:
        if len(row) != len(header):
            raise fail(source, f"{len(row)} values in this row, but the header names {len(header)} columns "
                               f"({', '.join(header)})", line)
    return Rows(source, "csv", [h.strip() for h in header], [row for _, row in data], [line for line, _ in data],
                header=header, header_line=header_line)


def _records(items: list[Any], source: str, lines: list[int] | None) -> Rows:
    def bad_row(i: int, message: str) -> ConfigError:
        return fail(source, f"row {i + 1}: {message}", lines[i] if lines else None)

    if all(isinstance(item, dict) for item in items):
        columns: list[str] = []
        for item in items:
            columns += [str(k) for k in item if str(k) not in columns]
        cells = [[item.get(c) for c in columns] for item in items]  # JSON keys are strings
        return Rows(source, "json", columns, cells, lines)
    if all(isinstance(item, list) for item in items):
        for i, item in enumerate(items):
            if len(item) != len(items[0]):
                raise bad_row(i, f"{len(item)} values, but the first row has {len(items[0])}")
        return Rows(source, "json", None, [list(item) for item in items], lines)
    kind = dict if isinstance(items[0], dict) else list
    bad = next(i for i, item in enumerate(items) if not isinstance(item, kind))
    raise bad_row(bad, "expected every row to be an object of column -> value (or every row a list of values), got "
                       f"{type(items[bad]).__name__}")


def _json(text: str, source: str) -> Rows:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(source, f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    if isinstance(data, dict) and data and all(isinstance(v, (list, dict)) for v in data.values()):
        import pandas as pd  # a mapping of column -> values (pandas' "columns" orientation)

        try:
            frame = pd.DataFrame(data)
        except ValueError as exc:
            raise fail(source, f"cannot read it as columns of values: {exc}") from None
        return Rows(source, "json", [str(c) for c in frame.columns], frame.astype(object).values.tolist(), None)
    if not isinstance(data, list) or not data:
        raise fail(source, "expected a list of rows (objects of column -> value), got "
                           f"{'an empty list' if data == [] else type(data).__name__}")
    return _records(data, source, None)


def _json_lines(text: str, source: str) -> Rows:
    items, lines = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise fail(source, f"not valid JSON: {exc.msg} (column {exc.colno})", number) from None
        lines.append(number)
    return _records(items, source, lines)


def texts(rows: Rows) -> list[str]:
    """The `text` column; a missing text is refused (it would be classified as the string 'nan')."""
    if rows.columns is None or "text" not in rows.columns:
        raise fail(rows.source, "a text model needs a `text` column (or a .txt file, one text a line)")
    index = rows.columns.index("text")
    out = []
    for i, row in enumerate(rows.cells):
        cell = row[index]
        if cell is None or (isinstance(cell, float) and math.isnan(cell)) or not str(cell).strip():
            raise fail(rows.source, f"row {i + 1}: the text is empty", rows.line(i))
        out.append(str(cell))
    return out


def feature_matrix(rows: Rows, features: Sequence[str] | None) -> Any:
    """The rows as a float32 matrix in the model's feature order (a model that takes numbers only): columns matched
    by name (see `match_columns`), every cell a finite number."""
    import numpy as np

    rows, order, names = match_columns(rows, features)
    columns = [_column(rows, index, name) for index, name in zip(order, names)]
    _raise_issues([issue for _, found in columns for issue in found], rows)
    return np.stack([values for values, _ in columns], axis=1)


def model_frame(rows: Rows, inputs: Sequence[dict[str, Any]]) -> Any:
    """The rows as a DataFrame of the model's raw input columns (`inputs`: name, MLflow type, nullable), each cell
    converted to its column's type; a cell that does not fit (a word in a number column, a missing cell where the
    model's signature requires a value) is one located line."""
    import pandas as pd

    rows, order, names = match_columns(rows, [i["name"] for i in inputs])
    by_name = {i["name"]: i for i in inputs}
    columns = [_typed_column(rows, index, by_name[name]) for index, name in zip(order, names)]
    _raise_issues([issue for _, found in columns for issue in found], rows)
    return pd.DataFrame({name: values for name, (values, _) in zip(names, columns)})


def _raise_issues(issues: list[ConfigIssue], rows: Rows) -> None:
    if issues:
        more = len(issues) - MAX_SHOWN
        raise ConfigError(issues[:MAX_SHOWN] + ([ConfigIssue(f"... and {more} more cell(s) like these",
                                                             file=rows.source)] if more > 0 else []))


def match_columns(rows: Rows, features: Sequence[str] | None) -> tuple[Rows, list[int], list[str]]:
    """Where each model column is in the rows: matched by name (any order; columns the model does not take are
    ignored, with a note), by position only where the file names no columns (a CSV without a header, or with pandas'
    0, 1, 2, ... header), and then only with as many columns as the model has features."""
    header = _header_kind(rows, features)
    if header != "names":
        rows = Rows(rows.source, rows.kind, None, ([rows.header or []] if header == "data" else []) + rows.cells,
                    ([rows.header_line] if header == "data" else []) + (rows.lines or []))
    if not rows.cells:
        raise fail(rows.source, "no rows to predict (only a header)")
    if rows.columns is None:  # by position
        width = len(rows.cells[0])
        if features and width != len(features):
            raise fail(rows.source, f"{width} values per row, but the model takes {len(features)} features "
                                    f"({', '.join(features)}); give a header row naming the columns")
        order, names = list(range(width)), list(features or [f"column {i + 1}" for i in range(width)])
    elif features:
        missing = [f for f in features if f not in rows.columns]
        if missing:
            raise fail(rows.source, f"missing column(s) the model needs: {', '.join(missing)} (the model takes: "
                                    f"{', '.join(features)}; the file has: {', '.join(rows.columns)})")
        extra = [c for c in rows.columns if c not in features]
        if extra:
            print(f"note: {rows.source}: ignoring column(s) the model does not take: {', '.join(extra)}",
                  file=sys.stderr)
        order, names = [rows.columns.index(f) for f in features], list(features)
    else:
        order, names = list(range(len(rows.columns))), list(rows.columns)
    if not order:
        raise fail(rows.source, "the rows hold no values")
    return rows, order, names


def _is_blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, float) and math.isnan(cell)) or (
        isinstance(cell, str) and cell.strip().lower() in MISSING)


#: how a cell reads as a boolean
BOOLEANS = {"true": True, "yes": True, "y": True, "t": True, "1": True,
            "false": False, "no": False, "n": False, "f": False, "0": False}


def _typed_column(rows: Rows, index: int, column: dict[str, Any]) -> tuple[Any, list[ConfigIssue]]:
    """One raw input column converted to its signature type, and a located issue for each cell that does not fit."""
    import numpy as np
    import pandas as pd

    name, kind, nullable = column["name"], column["type"], column.get("nullable", False)
    values: list[Any] = []
    issues: list[ConfigIssue] = []

    def bad(i: int, why: str) -> None:
        issues.append(ConfigIssue(f"row {i + 1}, column '{name}': {why}", file=rows.source, line=rows.line(i)))

    for i, row in enumerate(rows.cells):
        cell = row[index]
        if _is_blank(cell):
            if not nullable:
                bad(i, "missing value (an empty cell, NaN or null; this column had none in training, so the "
                       "model's signature requires a value)")
            values.append(None)
            continue
        text = cell.strip() if isinstance(cell, str) else cell
        if kind in ("double", "float", "long", "integer"):
            try:
                number = float(text)
            except (TypeError, ValueError, OverflowError):
                bad(i, _problem(cell))
                number = math.nan
            if kind in ("long", "integer") and math.isfinite(number) and not number.is_integer():
                bad(i, f"{cell!r} is not a whole number (the column holds integers)")
            values.append(number)
        elif kind == "boolean":
            flag = cell if isinstance(cell, bool) else BOOLEANS.get(str(text).lower())
            if flag is None:
                bad(i, f"{cell!r} is not true or false")
            values.append(flag)
        elif kind == "datetime":
            stamp = pd.to_datetime(text, errors="coerce")
            if pd.isna(stamp):
                bad(i, f"{cell!r} is not a date")
            values.append(stamp)
        else:
            values.append(str(int(cell)) if isinstance(cell, float) and cell.is_integer() else str(text))
    if kind in ("long", "integer") and None not in values:
        return np.asarray(values, dtype=np.float64).astype(np.int64), issues
    if kind in ("double", "float", "long", "integer"):
        return np.asarray([math.nan if v is None else v for v in values], dtype=np.float64), issues
    if kind == "boolean" and None not in values:
        return np.asarray(values, dtype=bool), issues
    return pd.Series(values, dtype=object).to_numpy(), issues

def _column(rows: Rows, index: int, name: str) -> tuple[Any, list[ConfigIssue]]:
    """One feature column as float32 values, and a located issue for each cell that is not a finite number."""
    import numpy as np

    cells = [row[index] for row in rows.cells]
    try:  # the common case, at numpy's speed: every cell a number (None, '', 'nan' become NaN or fail)
        values = np.asarray([c.strip() if isinstance(c, str) else c for c in cells], dtype=np.float64)
        if values.shape != (len(cells),):
            raise ValueError("a cell holds a list")
        problems = {i: None for i in np.flatnonzero(~np.isfinite(values))}
    except (TypeError, ValueError, OverflowError):
        values, problems = np.zeros(len(cells)), {}
        for i, cell in enumerate(cells):
            try:
                values[i] = float(cell.strip() if isinstance(cell, str) else cell)
            except (TypeError, ValueError, OverflowError):
                problems[i] = None
        problems.update({i: None for i in np.flatnonzero(~np.isfinite(values))})
    with np.errstate(over="ignore"):
        narrow = values.astype(np.float32)
    problems.update({i: f"{cells[i]!r} does not fit a 32-bit float" for i in np.flatnonzero(~np.isfinite(narrow))
                     if i not in problems})
    return narrow, [ConfigIssue(f"row {i + 1}, column '{name}': {why or _problem(cells[i])}", file=rows.source,
                                line=rows.line(i)) for i, why in sorted(problems.items())]


def _problem(cell: Any) -> str:
    """Why a cell is not a finite number."""
    if cell is None or (isinstance(cell, str) and cell.strip().lower() in MISSING):
        return "missing value (an empty cell, NaN or null; every feature needs a number)"
    try:
        value = float(cell.strip() if isinstance(cell, str) else cell)
    except (TypeError, ValueError, OverflowError):
        shown = cell if len(str(cell)) <= 40 else f"{str(cell)[:40]}..."
        return f"{shown!r} is not a number"
    if math.isnan(value):
        return "missing value (an empty cell, NaN or null; every feature needs a number)"
    return f"{cell!r} is not a finite number"


def _is_number(cell: Any) -> bool:
    try:
        return math.isfinite(float(cell))
    except (TypeError, ValueError, OverflowError):
        return False


def _header_kind(rows: Rows, features: Sequence[str] | None) -> str:
    """What a CSV's first row is: "names" (of columns), "positions" (0, 1, 2, ... as pandas writes a frame without
    column names) or "data" (numbers that name none of the model's features: a file without a header)."""
    if rows.kind != "csv" or rows.header is None or (features and any(c in features for c in rows.columns or [])):
        return "names"
    if rows.columns == [str(i) for i in range(len(rows.columns))]:
        return "positions"
    return "data" if all(_is_number(cell) for cell in rows.header) else "names"
