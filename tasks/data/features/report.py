"""The feature table (column, type, missing %, distinct values, strategy) where users look: the MLflow run (a table
and one param per column), the Prefect flow run (a table artifact), and the terminal (`fuseflow validate
--show-features`)."""
from __future__ import annotations

import logging
import re
from typing import Any, Mapping, Sequence

log = logging.getLogger("fuseflow")

#: characters MLflow refuses in a param name (it takes letters, digits, _ - . space : /)
_NOT_IN_PARAM_NAMES = re.compile(r"[^\w\-. :/]")
COLUMNS = ("column", "type", "missing_pct", "distinct", "strategy", "source")


def feature_params(report: Mapping[str, Any]) -> dict[str, str]:
    """`feature.<column>` = "type: strategy" for every column, and `data.rows_dropped.<why>` counts."""
    params = {f"feature.{_NOT_IN_PARAM_NAMES.sub('_', str(row['column']))}": f"{row['type']}: {row['strategy']}"
              for row in report.get("feature_table", [])}
    params.update({f"data.rows_dropped.{why}": str(n) for why, n in (report.get("rows_dropped") or {}).items()})
    if report.get("group_by"):
        params["data.split.grouped_by"] = str(report["group_by"])
    return params


def log_feature_report(report: Mapping[str, Any], logger: Any) -> None:
    """The table as `features/feature_table.json` and the params on the MLflow run; a Prefect table artifact when
    the run is a Prefect flow run; the dropped rows said in the log."""
    rows = list(report.get("feature_table") or [])
    if not rows:
        return
    logger.log_table(rows, "features/feature_table.json")
    logger.log_params(feature_params(report))
    for why, n in (report.get("rows_dropped") or {}).items():
        what = "the label is missing" if why == "label" else f"'{why}' is missing (missing: drop_row)"
        log.info("dropped %d of %d rows: %s", n, report.get("rows", 0), what)
    _prefect_table(rows, logger.run_id)


def _prefect_table(rows: Sequence[Mapping[str, Any]], run_id: str) -> None:
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    from prefect.artifacts import create_table_artifact

    create_table_artifact([dict(row) for row in rows], key="feature-table",
                          description=f"Features of MLflow run {run_id}: type, missing %, strategy")


def render_table(name: str, rows: Sequence[Mapping[str, Any]], dropped: Mapping[str, int] | None = None) -> Any:
    """A rich Table of the feature rows, for the terminal."""
    from rich.table import Table

    table = Table(title=f"{name}: features", title_justify="left")
    for column in COLUMNS:
        table.add_column(column.replace("_pct", " %"), justify="right" if column in ("missing_pct", "distinct") else "left")
    for row in rows:
        table.add_row(*[f"{row[c]:g}" if c == "missing_pct" else str(row[c]) for c in COLUMNS])
    if dropped:
        table.caption = "rows dropped: " + ", ".join(f"{n} ({why} missing)" for why, n in dropped.items())
    return table
