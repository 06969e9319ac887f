"""The body of a scoring pipeline: the model URI resolved and pinned, every row scored into the output, and the
MLflow run told which model scored which rows, how many, what it predicted and how far the rows drifted."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from tasks.pipeline.resolved import ResolvedPipeline
from tasks.pipeline.summary import RunSummary
from tasks.scoring.drift import drift_summary
from tasks.steps import scoring as steps
from tasks.tracking.logger import RunLogger

log = logging.getLogger("fuseflow")


def run_scoring(pipeline: ResolvedPipeline, logger: RunLogger, base_dir: Path) -> RunSummary:
    """Score `pipeline.spec.predict.data` with its model into its output, inside `logger`'s MLflow run."""
    config = pipeline.spec.predict
    now = datetime.now(timezone.utc)
    values = {"date": now.strftime("%Y-%m-%d"), "time": now.strftime("%H%M%S"), "run_id": logger.run_id,
              "pipeline": pipeline.name}
    with logger.phase("resolve-model"):
        model = steps.resolve_model(config.model, logger.tracking_uri)
        logger.set_tags(model.tags())
        logger.log_params({"scoring.model_pinned_uri": model.pinned_uri, "scoring.model_version": model.version or "",
                           "scoring.model_run_id": model.run_id or ""})
        log.info("scoring with %s (%s)", model.pinned_uri, f"{model.uri} now" if model.uri != model.pinned_uri
                 else "as given")
        profile = steps.load_profile(model.run_id, logger.tracking_uri) if config.drift.enabled else None
    with logger.phase("score"):
        result = steps.score(config, model.pinned_uri, logger.tracking_uri, base_dir, values, profile)
    logger.log_metrics({**result.metrics, "scoring_seconds": result.seconds})
    report = {"model": model.tags(), "input": config.data.describe(), "output": result.location,
              "rows": result.rows, "seconds": result.seconds, "metrics": result.metrics,
              "distribution": result.distribution, "drift": result.drift}
    logger.log_dict(report, "scoring/scoring_report.json")
    if result.distribution:
        logger.log_table(result.distribution, "scoring/prediction_distribution.json")
    if result.drift:
        logger.log_table(result.drift, "scoring/drift.json")
    tags = {"fuseflow.scoring.output": result.location, "fuseflow.scoring.rows": str(result.rows)}
    drifted = drift_summary(result.drift)
    tags["fuseflow.drift"] = "warn" if drifted else "ok" if result.drift else "not measured"
    logger.set_tags(tags)
    if drifted:
        log.warning("%s (above drift.warn_above = %g)", drifted, config.drift.warn_above)
    log.info("scored %d rows into %s in %.1f s (%.0f rows/s)", result.rows, result.location, result.seconds,
             result.metrics.get("rows_per_s", 0))
    shown = {k: v for k, v in result.metrics.items() if not k.startswith("drift_psi.")}
    return RunSummary(logger.run_id, model.pinned_uri, shown, result.task)
