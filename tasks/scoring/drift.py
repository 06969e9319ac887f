"""Drift of scored rows from the training data, per column: the population stability index (PSI) of the rows'
distribution over the training profile's buckets (tasks/data/features/profile.py), accumulated batch by batch."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional

from pydantic import Field

from tasks.data.features.profile import numeric_counts, value_counts
from tasks.registry import StrictModel

if TYPE_CHECKING:
    import pandas as pd

#: a bucket empty on one side counts as this share (PSI is infinite otherwise)
EPSILON = 1e-4


class DriftConfig(StrictModel):
    """`drift: {warn_above: 0.2}`: tag the run (and warn) when a column's PSI exceeds it; `enabled: false` skips."""

    enabled: bool = True
    warn_above: float = Field(0.2, gt=0, description="PSI above which a column counts as drifted (0.1: some "
                              "shift, 0.25: a large one, by the usual rule of thumb)")


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index of two share vectors over the same buckets."""
    total = sum(actual) or 1.0
    value = 0.0
    for e, a in zip(expected, actual):
        e, a = max(e, EPSILON), max(a / total, EPSILON)
        value += (a - e) * math.log(a / e)
    return value


class DriftMeter:
    """Counts the scored rows per training bucket, column by column; `table()` gives the PSI per column."""

    def __init__(self, profile: dict[str, Any]) -> None:
        self.columns = profile.get("columns", {})
        self.counts: dict[str, Any] = {}

    def update(self, frame: "pd.DataFrame") -> None:
        for name, spec in self.columns.items():
            if name not in frame.columns:
                continue
            if spec["kind"] == "numeric":
                import pandas as pd

                values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64", na_value=float("nan"))
                counts = numeric_counts(values, spec["edges"])
            else:
                counts = value_counts(frame[name], spec["values"])
            self.counts[name] = counts if name not in self.counts else self.counts[name] + counts

    def table(self, warn_above: float) -> list[dict[str, Any]]:
        """Per column: PSI, whether it is above `warn_above`, and the bucket that moved most."""
        rows = []
        for name, counts in self.counts.items():
            expected = self.columns[name]["shares"]
            value = psi(expected, list(counts))
            rows.append({"column": name, "psi": round(value, 4), "drifted": value > warn_above,
                         "rows": int(sum(counts))})
        return sorted(rows, key=lambda r: -r["psi"])


def drift_summary(rows: list[dict[str, Any]]) -> Optional[str]:
    """One line naming the drifted columns, or None."""
    drifted = [f"{r['column']} (PSI {r['psi']:.2f})" for r in rows if r["drifted"]]
    return f"drift in {len(drifted)} column(s): {', '.join(drifted)}" if drifted else None
