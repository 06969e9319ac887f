"""A Prefect progress artifact for the nested runs of a sweep or a fusion ("3 of 8 trials done"), on the flow run
that creates it, updated as each trial or member ends. Progress is a convenience: when the API refuses, the run
goes on (one warning, then silence)."""
from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from flows.nested import NestedJob, NestedOutcome
    from tasks.pipeline.runner import RunnerConfig

log = logging.getLogger("fuseflow")


def artifact_key(*parts: str) -> str:
    """`parts` joined into a valid artifact key (lowercase letters, digits and dashes only): `digits-mlp-trials`."""
    key = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    return key or "progress"


class RunProgress:
    """`n of N done` as a progress artifact (percent) under `key`, its description saying the counts.

    `advance()` as each trial or member ends, from any thread; `done` counts the ones already done when the
    artifact is created (a resumed sweep). Updates are serialised (the last one sent always holds the latest count)."""

    def __init__(self, key: str, total: int, description: str, done: int = 0) -> None:
        self.key = artifact_key(key)
        self.total = max(0, int(total))
        self.description = description
        self.done = min(max(0, int(done)), self.total) if self.total else max(0, int(done))
        self.artifact_id: Optional[Any] = None
        self._lock = threading.Lock()
        self._warned = False
        with self._lock:
            self._create()

    def __getstate__(self) -> dict[str, Any]:
        """Picklable without its lock: a cluster task runner (Dask, Ray) ships the flow's parameters with each task."""
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def percent(self) -> float:
        """Done as a percentage of the total (100 when there is nothing to do)."""
        return 100.0 if self.total <= 0 else min(100.0, 100.0 * self.done / self.total)

    def text(self, note: Optional[str] = None) -> str:
        """The artifact's description: `sweep trials of digits-mlp: 3 of 8 done (last: trial-2 finished)`."""
        line = f"{self.description}: {self.done} of {self.total} done"
        return f"{line} ({note})" if note else line

    def advance(self, count: int = 1, note: Optional[str] = None) -> None:
        """`count` more done (`note`: what just ended, in the description); never raises."""
        with self._lock:
            self.done += count
            self._send(note)

    def finish(self, note: Optional[str] = None) -> None:
        """Send the count once more with `note` (a sweep its time limit ended early: `7 of 10 done (time limit)`)."""
        with self._lock:
            self._send(note)

    def _create(self) -> None:
        try:
            from prefect.artifacts import create_progress_artifact

            self.artifact_id = create_progress_artifact(self.percent, key=self.key, description=self.text())
        except Exception as exc:  # noqa: BLE001 - progress never fails the run
            self._warn(exc)

    def _send(self, note: Optional[str]) -> None:
        if self.artifact_id is None:  # creating it failed (or the API was down): try again, once per update
            self._create()
            return
        try:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self.artifact_id, self.percent, description=self.text(note))
        except Exception as exc:  # noqa: BLE001 - progress never fails the run
            self._warn(exc)

    def _warn(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            log.warning("progress artifact %s not updated (%s: %s); the run goes on, its progress is in the logs",
                        self.key, type(exc).__name__, exc)


class ProgressFeed:
    """A job feed (see `flows.nested.JobFeed`) that advances `progress` as each job ends, after the feed it wraps
    has heard of it. (Slots: Prefect records a flow's parameters, and an object without `__dict__` is recorded by
    its type name only.)"""

    __slots__ = ("feed", "progress")

    def __init__(self, feed: Any, progress: RunProgress) -> None:
        self.feed = feed
        self.progress = progress

    def next_job(self) -> Optional[Any]:
        return self.feed.next_job()

    def job_done(self, job: Any, outcome: Any) -> None:
        try:
            self.feed.job_done(job, outcome)
        finally:
            self.progress.advance(note=f"last: {job.key} {outcome_word(outcome)}")


def outcome_word(outcome: Any) -> str:
    """`finished`, `pruned` or `failed`: how a nested job (`flows.nested.NestedOutcome`) ended."""
    if getattr(outcome, "pruned", None) is not None:
        return "pruned"
    return "failed" if getattr(outcome, "error", None) else "finished"


def train_all_with_progress(jobs: list["NestedJob"], runner: "RunnerConfig", max_concurrent: Optional[int],
                            base_dir: Path, parent_run_id: str, label: str, key: str,
                            description: str) -> list["NestedOutcome"]:
    """`flows.nested.train_all` with a `RunProgress(key, len(jobs), description)` advanced as each job ends (a
    fusion's members); the outcomes in the jobs' order. No jobs: no artifact."""
    from flows.nested import ListFeed, train_feed

    if not jobs:
        return []
    feed = ListFeed(jobs)
    progress = RunProgress(key, len(jobs), description)
    train_feed(ProgressFeed(feed, progress), len(jobs), {job.pipeline.modality for job in jobs}, runner,
               max_concurrent, base_dir, parent_run_id, label)
    return feed.outcomes
