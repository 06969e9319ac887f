"""The Prefect flow that runs one pipeline: validate, open the MLflow run, run the body for its kind, close the run."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Optional

from flows.env import apply_defaults

apply_defaults()

from prefect import flow, get_run_logger  # noqa: E402

from flows.spec import DEFAULT_FILE, load_project, parse_overrides, resolve  # noqa: E402
from flows.run_report import publish_run_report  # noqa: E402
from flows.tracking_run import tracked_run  # noqa: E402
from tasks.pipeline_config import PipelineSpec  # noqa: E402
from tasks.promote import register_and_promote  # noqa: E402
from tasks.tracking import RunLogger  # noqa: E402

Runner = Callable[[PipelineSpec, RunLogger, Path], dict[str, Any]]

#: pipeline kind (`PipelineSpec.kind`) -> "module:function" that runs its body into an open MLflow run
RUNNERS: dict[str, str] = {
    "tabular": "flows.tabular:run_tabular",
    "fusion": "flows.fusion:run_fusion",
    "text": "flows.text:run_text",
    "sweep": "flows.sweep:run_sweep",
}


def runner_for(kind: str) -> Runner:
    """The body function for a pipeline kind, imported on first use (keeps heavy imports lazy)."""
    module, _, attr = RUNNERS[kind].partition(":")
    return getattr(importlib.import_module(module), attr)


@flow(name="fuseflow", flow_run_name="{pipeline}", validate_parameters=True, persist_result=False)
def run_pipeline(pipeline: str, overrides: Optional[dict[str, Any]] = None, file: str = DEFAULT_FILE,
                 no_cache: bool = False, resume: bool = False, rerun_of: Optional[str] = None) -> dict[str, Any]:
    """Run pipeline `pipeline` of `file`, with `overrides` (dotted keys -> values) applied before validation.

    `no_cache` recomputes every cached step; `resume` continues the latest unfinished run of this pipeline and
    config from its last checkpoint; `rerun_of` tags the run as a reproduction of that MLflow run.

    Args:
        pipeline: the pipeline's name in the pipelines file
        overrides: dotted keys -> values applied before validation, like `--set`, e.g. {"train.epochs": 5,
            "train.optimizer.lr": 0.0003, "model.hidden": [64, 64]}; an invalid one fails the run at once
        file: the pipelines file
        no_cache: recompute every cached step
        resume: continue the latest unfinished run of this pipeline and config from its last checkpoint
        rerun_of: an MLflow run id this run reproduces (tag only)
    """
    from tasks.caching import cache_dir, cache_options

    project = load_project(file)
    spec = resolve(project, pipeline, parse_overrides(overrides))
    body = runner_for(spec.kind)
    tags = {"fuseflow.rerun_of": rerun_of} if rerun_of else None
    with tracked_run(spec, overrides, project.base_dir, extra_tags=tags, resume=resume) as logger, \
            cache_options(cache_dir(project.base_dir), no_cache):
        summary = body(spec, logger, project.base_dir)
        decision = register_and_promote(spec.tracking, summary["run_id"], summary["model_uri"], logger.tracking_uri)
    summary["pipeline"] = pipeline
    summary["registry"] = decision.to_dict() if decision else None
    summary["mlflow_run_url"] = publish_run_report(pipeline, summary, logger.tracking_uri, summary["registry"])
    get_run_logger().info("finished: MLflow run %s, %s", summary["run_id"],
                          ", ".join(f"{k}={v:.4f}" for k, v in summary["metrics"].items()))
    if summary["registry"]:
        get_run_logger().info("registry: %s", summary["registry"]["message"])
    return summary
