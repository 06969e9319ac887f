"""The Prefect flow that runs one pipeline: validate, load and check its data, open the MLflow run, run the body for
its kind, close the run.

`flows.pipeline:run_pipeline` is the entrypoint every deployment names: keep it here."""
from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Any, Optional, Sequence

from prefect import flow, get_run_logger

from flows.bodies.data import BEFORE_RUN, PHASE, count_before_run
from flows.bodies.reuse import ReusingBody
from flows.bodies.table import body_for
from flows.env import quiet_defaults
from flows.form_schema import merged_overrides
from flows.run_names import name_flow_run, run_name
from flows.run_report import publish_run_report
from flows.spec.overrides import Override, parse_overrides
from flows.spec.project import DEFAULT_FILE, ProjectFile, load_project
from flows.spec.pydantic_errors import located_issue
from flows.spec.resolve import resolve
from flows.tracking_run import tracked_run
from tasks.errors import ConfigError
from tasks.pipeline.resolved import ResolvedPipeline
from tasks.pipeline.retries import retry_policy
from tasks.pipeline.summary import RunSummary
from tasks.tracking import tags
from tasks.tracking.promotion import register_and_promote


@flow(name="fuseflow", validate_parameters=True, persist_result=False)
def run_pipeline(pipeline: str, overrides: Optional[dict[str, Any]] = None, file: str = DEFAULT_FILE,
                 no_cache: bool = False, resume: bool = False, rerun_of: Optional[str] = None,
                 hyperparameters: Optional[dict[str, Any]] = None) -> RunSummary:
    """Run pipeline `pipeline` of `file`, with the changed `hyperparameters` and `overrides` applied before validation.

    `no_cache` recomputes every cached step; `resume` continues the latest unfinished run of this pipeline and
    config from its last checkpoint; `rerun_of` tags the run as a reproduction of that MLflow run. A config error
    fails the flow run with the CLI's message (no traceback) and raises it to a Python caller.

    Args:
        pipeline: the pipeline's name in the pipelines file
        overrides: dotted keys -> values applied before validation, like `--set`, e.g. {"train.epochs": 5,
            "train.optimizer.lr": 0.0003, "model.hidden": [64, 64]}; an invalid one fails the run at once
        file: the pipelines file
        no_cache: recompute every cached step
        resume: continue the latest unfinished run of this pipeline and config from its last checkpoint
        rerun_of: an MLflow run id this run reproduces (tag only)
        hyperparameters: the pipeline's values from the YAML, nested as there; a changed one becomes an override
    """
    from tasks.cache.policy import cache_dir, cache_options

    try:
        project = load_project(file)
        changes = dict(overrides or {})
        if hyperparameters:  # the form sends every field: only the ones that differ from the YAML change the run
            changes = merged_overrides(resolve(project, pipeline).spec, hyperparameters, overrides)
        parsed = parse_overrides(changes)
        resolved = resolve(project, pipeline, parsed)
        changes = {o.key: o.value for o in parsed}
        body = body_for(resolved)
    except ConfigError as err:
        name_flow_run(pipeline)
        return config_failure(err)
    spec = resolved.spec
    name = run_name(pipeline, changes)
    name_flow_run(name)
    if resolved.kind == "training" and not resume:  # an unchanged rerun copies the outputs of the run it repeats
        body = ReusingBody(body)
    extra_tags = {tags.RERUN_OF: rerun_of} if rerun_of else None
    policy = spec.retry_policy
    # the CLI sets the quiet defaults already; a Prefect worker or a Python caller gets them here, for the run
    with quiet_defaults(), cache_options(cache_dir(project.base_dir), no_cache):
        if policy.describe():
            get_run_logger().info("retries and timeouts: %s", policy.describe())
        data, failed, load_seconds = None, None, 0.0
        try:  # the data is loaded and checked before the MLflow run opens: a data problem leaves no run behind
            with retry_policy(policy):
                data, load_seconds = data_before_run(resolved, body, project.base_dir)
        except ConfigError as err:
            return config_failure(located(err, project, pipeline, parsed))
        except Exception as exc:  # noqa: BLE001 - not the data's fault (a database down, a timeout): recorded below
            failed = exc
        if data is not None:
            body = partial(body, data=data)
        with tracked_run(spec, changes or None, project.base_dir, extra_tags=extra_tags, resume=resume,
                         run_name=name) as logger:
            if failed is not None:  # the run records it and ends FAILED, as when the step fails inside the run
                raise failed
            if load_seconds:
                count_before_run(logger, PHASE, load_seconds)
            with retry_policy(policy):
                summary = body(resolved, logger, project.base_dir)
            with logger.phase("register"):
                summary.registry = register_and_promote(spec.tracking, summary.run_id, summary.model_uri,
                                                        logger.tracking_uri)
    _keep_cache_under_cap(cache_dir(project.base_dir))
    summary.pipeline = pipeline
    summary.mlflow_run_url = publish_run_report(pipeline, summary, logger.tracking_uri)
    get_run_logger().info("finished: MLflow run %s, %s", summary.run_id,
                          ", ".join(f"{k}={v:.4f}" for k, v in summary.metrics.items()))
    if summary.registry:
        get_run_logger().info("registry: %s", summary.registry.message)
    return summary


def data_before_run(pipeline: ResolvedPipeline, body: Any, base_dir: Path) -> tuple[Optional[Any], float]:
    """The pipeline's data, loaded and checked by its kind's entry in `BEFORE_RUN` (flows/bodies/data.py), unless an
    earlier run with the same whole-run key may be reused (then nothing is loaded: that run's data passed these
    checks), or None when its body takes no data; and the seconds it took (0 when nothing was loaded), which the
    run's `load-data` phase counts once the run opens."""
    if isinstance(body, ReusingBody) and body.candidates(pipeline, base_dir):
        return None, 0.0
    load = BEFORE_RUN.get(pipeline.kind)
    if load is None:
        return None, 0.0
    began = time.perf_counter()
    data = load(pipeline, base_dir)
    return data, time.perf_counter() - began


def located(err: ConfigError, project: ProjectFile, pipeline: str, overrides: Sequence[Override]) -> ConfigError:
    """A data step's error (key paths under the pipeline, e.g. `data.label_column`) located in the pipelines file:
    the file and line of the key (or of the nearest section written, `data:`), or the `--set` that gave it."""
    origins = {o.path: f"--set {o.text}" for o in overrides}
    return ConfigError([issue if issue.file or issue.origin else
                        located_issue(project, pipeline, issue.path, issue.message, origins) for issue in err.issues])


def config_failure(err: ConfigError) -> Any:
    """The flow run's end on a config error: FAILED with the CLI's lines as its message, one error line in its log
    and no traceback; a Python caller (the CLI) gets the ConfigError raised back by the flow call."""
    from prefect.states import Failed

    message = str(err)
    get_run_logger().error("invalid configuration: %s", message)
    err.fuseflow_reported = True  # type: ignore[attr-defined]
    _drop_reported_tracebacks()
    return Failed(message=message, data=err)


class _ReportedErrorFilter(logging.Filter):
    """Drops a record whose exception is a config error the flow reported already in one line: a served run's
    engine raises the returned failure again and would log it with a traceback ("Engine execution exited ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not getattr(exc, "fuseflow_reported", False)


def _drop_reported_tracebacks() -> None:
    """Install the filter once on Prefect's flow-run logger (it only ever drops errors marked as reported)."""
    flow_runs = logging.getLogger("prefect.flow_runs")
    if not any(isinstance(f, _ReportedErrorFilter) for f in flow_runs.filters):
        flow_runs.addFilter(_ReportedErrorFilter())


def _keep_cache_under_cap(folder: Any) -> None:
    """Evict the least recently used step results beyond the cap (FUSEFLOW_CACHE_MAX_GB); never fails the run."""
    from tasks.cache.store import describe, max_bytes, prune

    try:
        evicted = prune(folder, max_bytes())
    except (OSError, ValueError) as exc:
        get_run_logger().warning("step cache cap not applied: %s", exc)
        return
    if evicted:
        get_run_logger().info("step cache over its cap: evicted %d least recently used result(s), %s", len(evicted),
                              describe(sum(e.size for e in evicted)))
