"""Unchanged reruns: a training body wrapped so that, when the whole-run key (config, data, code, versions: see
tasks/cache/run_key.py) matches a finished run of the same store, the new run copies that run's metrics, plots,
dataset inputs and model (as a LoggedModel of the new run, tagged with the run it came from) instead of computing
them. The new run is FINISHED on its own, tagged
`fuseflow.cache.run=reused` with the run it reused. `--no-cache` (and `--resume`) always compute."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tasks.steps.step_task import step
from prefect.cache_policies import NO_CACHE

from flows.bodies.data import LoadedData, count_before_run
from flows.bodies.training import Body
from tasks.cache import index as cache_index
from tasks.cache.policy import current_options
from tasks.cache.run_key import RunKey, run_key
from tasks.pipeline.resolved import ResolvedPipeline
from tasks.pipeline.summary import RunSummary
from tasks.steps.run_logger import run_logger
from tasks.tracking import tags
from tasks.tracking.logger import RunLogger

REPORT_FILE = "evaluation/evaluation_report.json"
MODEL_DIR = "model"


@dataclass(frozen=True)
class ReusableRun:
    """A finished run whose outputs a rerun can copy: its id and its evaluation report."""

    run_id: str
    report: dict[str, Any]


def reusable_run(logger: RunLogger, pipeline: str, candidates: list[str]) -> Optional[ReusableRun]:
    """The newest candidate that is still there, FINISHED, of the same pipeline and complete (report and model)."""
    from mlflow.artifacts import load_dict
    from mlflow.exceptions import MlflowException

    from tasks.tracking.logged_model import has_model

    for run_id in candidates:
        if run_id == logger.run_id:
            continue
        try:
            run = logger.client.get_run(run_id)
            if (run.info.status != "FINISHED" or run.info.lifecycle_stage != "active"
                    or run.data.tags.get(tags.PIPELINE) != pipeline):
                continue
            if not has_model(logger.client, run, MODEL_DIR):  # its LoggedModel, or an older run's model folder
                continue
            return ReusableRun(run_id, load_dict(f"{run.info.artifact_uri}/{REPORT_FILE}"))
        except (MlflowException, OSError, ValueError):  # deleted, another store, damaged: look further
            continue
    return None


@step(name="reuse-run", cache_policy=NO_CACHE)
def reuse_run(origin: ReusableRun, logger: RunLogger, reason: str) -> RunSummary:
    """Copy the outputs of `origin` into this run and tag it as their reuse."""
    from tasks.tracking.copy_run import copy_run_outputs

    run = copy_run_outputs(logger.client, origin.run_id, logger.run_id, logger.tracking_uri)
    steps = {name for name in run.data.tags if name.startswith(tags.CACHE_PREFIX) and name.count(".") == 2
             and name != tags.RUN_CACHE}  # fuseflow.cache.<step>: each step's result is reused too
    step_tags = {name: "cached" for name in steps}
    step_tags.update({f"{name}.reason": f"whole run reused: {reason}" for name in steps})
    logger.set_tags({**step_tags, tags.RUN_CACHE: "reused", tags.RUN_CACHE_REASON: reason,
                     tags.REUSED_RUN: origin.run_id})
    run_logger().info("unchanged config, data, code and versions: reused every output of MLflow run %s (training, "
                      "evaluation and model not computed again; --no-cache computes)", origin.run_id)
    return RunSummary(logger.run_id, f"runs:/{logger.run_id}/{MODEL_DIR}", dict(origin.report.get("metrics", {})),
                      origin.report.get("task", ""))


class ReusingBody:
    """`body`, or the copy of a finished run with the same whole-run key. One per pipeline run: the key and the runs
    that had it are looked up once, before the run opens (`candidates`), so the flow loads and checks the data
    before the run only when no earlier run may be reused (a reused run loads nothing)."""

    def __init__(self, body: Body) -> None:
        self.body = body
        self._lookup: Optional[tuple[RunKey, list[str], float]] = None  # key, runs that had it, seconds it took

    def candidates(self, pipeline: ResolvedPipeline, base_dir: Path) -> list[str]:
        """MLflow runs the cache index says computed this pipeline's whole-run key (none with --no-cache)."""
        if self._lookup is None:
            began = time.perf_counter()
            options = current_options()
            key = self.key(pipeline, base_dir)
            found = [] if options.refresh else cache_index.find_runs(options.folder, key.value)
            self._lookup = (key, found, time.perf_counter() - began)
        return self._lookup[1]

    def __call__(self, pipeline: ResolvedPipeline, logger: RunLogger, base_dir: Path,
                 data: Optional[LoadedData] = None) -> RunSummary:
        options = current_options()
        looked_up = self._lookup is not None
        with logger.phase("run-key"):
            found = self.candidates(pipeline, base_dir)
            key, _, seconds = self._lookup  # type: ignore[misc]
            if looked_up:  # before the run opened: its time still counts here
                count_before_run(logger, "run-key", seconds)
            scope = f"{pipeline.name}|{logger.tracking_uri}"
            origin = reusable_run(logger, pipeline.name, found) if found else None
        if origin is not None:
            with logger.phase("reuse"):
                return reuse_run(origin, logger, f"same key as MLflow run {origin.run_id}")
        reason = "--no-cache" if options.refresh else cache_index.explain_run_miss(options.folder, scope, key.parts)
        logger.set_tags({tags.RUN_CACHE: "computed", tags.RUN_CACHE_REASON: reason})
        summary = self.body(pipeline, logger, base_dir, data)  # type: ignore[call-arg]
        cache_index.record_run(options.folder, scope, key.value, key.parts, logger.run_id)
        return summary

    def key(self, pipeline: ResolvedPipeline, base_dir: Path) -> RunKey:
        """The whole-run key, with the code of the body that trains this pipeline's modality."""
        from flows.bodies.training import TRAINING_BODIES

        return run_key(pipeline.spec, TRAINING_BODIES.get(pipeline.modality or "", self.body), base_dir)
