"""The Prefect flow that runs one pipeline: validate, open the MLflow run, call the step tasks, close the run."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from flows.env import apply_defaults

apply_defaults()

from prefect import flow, get_run_logger  # noqa: E402

from flows.spec import DEFAULT_FILE, load_project, parse_overrides, resolve  # noqa: E402
from flows.tracking_run import tracked_run  # noqa: E402
from tasks import steps  # noqa: E402
from tasks.pipeline_config import PipelineSpec  # noqa: E402
from tasks.tracking import RunLogger  # noqa: E402


def run_training(spec: PipelineSpec, logger: RunLogger, base_dir: Path) -> dict[str, Any]:
    """data -> preprocess -> model -> train -> evaluate -> model artifact, all into `logger`'s run."""
    loss = getattr(spec.train, "loss", None)
    raw = steps.load_data(spec.data, spec.seed, base_dir, loss)
    steps.log_dataset(raw, logger)
    splits, scaling = steps.preprocess(spec.preprocess, raw, spec.data.target_scaling)
    model = steps.build_model(spec.model, splits.num_features, splits.num_outputs, spec.seed)
    model, result = steps.train(model, splits, spec.train, spec.seed, logger)
    report = steps.evaluate(model, splits, scaling, spec.evaluate, result, logger)
    model_uri = steps.log_model(model, spec.model, splits, scaling, logger)
    return {"run_id": logger.run_id, "model_uri": model_uri, "metrics": report["metrics"], "task": splits.task}


@flow(name="fuseflow", flow_run_name="{pipeline}", validate_parameters=True, persist_result=False)
def run_pipeline(pipeline: str, overrides: Optional[dict[str, Any]] = None, file: str = DEFAULT_FILE) -> dict[str, Any]:
    """Run pipeline `pipeline` of `file`, with `overrides` (dotted keys -> values) applied before validation."""
    project = load_project(file)
    spec = resolve(project, pipeline, parse_overrides(overrides))
    with tracked_run(spec, overrides, project.base_dir) as logger:
        summary = run_training(spec, logger, project.base_dir)
    summary["pipeline"] = pipeline
    get_run_logger().info("finished: MLflow run %s, %s", summary["run_id"],
                          ", ".join(f"{k}={v:.4f}" for k, v in summary["metrics"].items()))
    return summary
