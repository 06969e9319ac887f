"""The body of a tabular training pipeline: data -> preprocess -> model -> train -> evaluate -> model artifact."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from flows.bodies.data import PHASE, LoadedData, splits_in_run
from tasks.steps import tabular as steps
from tasks.cache.policy import cached_step, report_cache_use
from tasks.train.checkpoint import Checkpointer
from tasks.pipeline.resolved import ResolvedPipeline
from tasks.pipeline.summary import RunSummary
from tasks.tracking.logger import RunLogger
from tasks.tracking.system_metrics import system_metrics


def run_tabular(pipeline: ResolvedPipeline, logger: RunLogger, base_dir: Path,
                data: Optional[LoadedData] = None) -> RunSummary:
    """Run every step into `logger`'s MLflow run, from `data` when it was loaded before the run opened; returns run
    id, model URI, test metrics and task."""
    spec = pipeline.spec
    raw, reuse = splits_in_run(data, pipeline, logger, base_dir)  # reuse: step -> "cached"/"computed" and why
    with logger.phase(PHASE):
        steps.log_dataset(raw, logger)
    with logger.phase("preprocess"):
        splits, scaling = cached_step(steps.preprocess, reuse)(spec.preprocess, raw, spec.data.target_scaling)
    with logger.phase("build-model"):
        model = steps.build_model(spec.model, splits.num_features, splits.num_outputs, spec.seed,
                                  splits.layout["embeddings"])
    checkpoint = Checkpointer(logger, getattr(spec.train, "checkpoint_every", 1),
                              min_seconds=getattr(spec.train, "checkpoint_seconds", 0.0))
    with logger.phase("train"), system_metrics(logger):
        model, result = cached_step(steps.train, reuse)(model, splits, spec.train, spec.seed, logger,
                                                        checkpoint=checkpoint)
        report_cache_use(logger, reuse, result)
    with logger.phase("evaluate"):
        report = steps.evaluate(model, splits, scaling, spec.evaluate, result, logger)
    with logger.phase("log-model"):
        model_uri = steps.log_model(model, spec.model, splits, scaling, logger)
    return RunSummary(logger.run_id, model_uri, report["metrics"], splits.task)
