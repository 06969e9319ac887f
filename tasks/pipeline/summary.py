"""What a pipeline run returns: the run, its model and test metrics, and what a fusion or sweep decided. The flow
returns it, the CLI prints it, `fuseflow rerun` compares it, and fusion members and sweep trials report it back."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class FusionSummary:
    """Which model shipped, the members' runs, and the full report (`tasks.fusion.report.FusionReport`)."""

    shipped: str  # "fused" or "best_member"
    member_run_ids: list[Optional[str]]
    report: Any


@dataclass
class SweepSummary:
    """The best trial (its index, run and values) and how the trials ended; `fused_trials` with `fuse_top`."""

    best_trial: int
    best_run_id: str
    best_values: dict[str, Any]
    finished: int = 0
    failed: int = 0
    pruned: int = 0
    fused_trials: list[int] = field(default_factory=list)


@dataclass
class RunSummary:
    """One pipeline run. `metrics` are the shipped model's test metrics (`test_<metric>`); `registry` is the
    registration and promotion decision (`tasks.tracking.promotion.Decision`) when `tracking.register` is set."""

    run_id: str
    model_uri: str
    metrics: dict[str, float]
    task: str
    pipeline: str = ""
    registry: Any = None
    mlflow_run_url: Optional[str] = None
    fusion: Optional[FusionSummary] = None
    sweep: Optional[SweepSummary] = None


@dataclass
class RerunSummary:
    """A `fuseflow rerun`: the new run, the run it reproduces and that run's test metrics, and what differed."""

    run: RunSummary
    rerun_of: str
    original: dict[str, float]
    warnings: list[str] = field(default_factory=list)
