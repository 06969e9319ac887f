"""Train several pipelines as nested MLflow runs under one parent run (fusion members, sweep trials), through the
task runner the pipeline's `runner:` section names, at most `max_concurrent` at once.

The jobs run in a subflow whose task runner is built from the config, so the same flow runs on threads, a Dask
cluster or a Ray cluster. A failed job is reported, not raised: the caller decides (a fusion stops, a sweep goes on).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from flows.bodies.training import run_training
from tasks.cache.policy import CacheOptions, cache_options, current_options, independent_steps
from tasks.pipeline.resolved import ResolvedPipeline
from tasks.pipeline.runner import RunnerConfig
from tasks.pipeline.summary import RunSummary
from tasks.tracking.logger import absolute_uri, resolve_tracking_uri


@dataclass
class NestedJob:
    """One training pipeline to run in a nested run: `key` names it in logs and the Prefect UI (member, trial-3)."""

    key: str
    pipeline: ResolvedPipeline
    overrides: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class NestedOutcome:
    key: str
    summary: Optional[RunSummary] = None
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None


@task(name="train-nested", task_run_name="train-{job.key}", cache_policy=NO_CACHE, persist_result=False)
def train_nested(job: NestedJob, base_dir: Path, parent_run_id: str, cache: CacheOptions) -> RunSummary:
    """Train the job's pipeline in a nested MLflow run (in this process, a thread, or a cluster worker)."""
    from flows.tracking_run import tracked_run
    from tasks.registry import load_components

    load_components()  # a fresh worker process: the registries before any config is used

    with tracked_run(job.pipeline.spec, job.overrides, base_dir, parent_run_id=parent_run_id,
                     extra_tags=job.tags) as logger, cache_options(cache.folder, cache.refresh), independent_steps():
        return run_training(job.pipeline, logger, base_dir)


@flow(name="fuseflow-nested", flow_run_name="{label}", persist_result=False, validate_parameters=False)
def run_nested(jobs: list[Any], base_dir: Path, parent_run_id: str, label: str, max_concurrent: int,
               cache: CacheOptions) -> list[NestedOutcome]:
    """Submit the jobs (`NestedJob`s), keeping at most `max_concurrent` in flight; one outcome per job, in order.
    (`jobs` is typed loosely: Prefect builds this flow's parameter schema when the module is imported.)"""
    queue = list(enumerate(jobs))
    in_flight: dict[Any, tuple[int, NestedJob]] = {}
    outcomes: dict[int, NestedOutcome] = {}
    while queue or in_flight:
        while queue and len(in_flight) < max_concurrent:
            index, job = queue.pop(0)
            in_flight[train_nested.submit(job, base_dir, parent_run_id, cache)] = (index, job)
        done = next(as_completed(list(in_flight)))
        index, job = in_flight.pop(done)
        done.wait()  # as_completed can yield before the task's final state is recorded
        try:
            # what the task raised; for a worker that died (killed, out of memory) the cluster's error, whereas
            # the task's state in the API would still say RUNNING
            outcomes[index] = NestedOutcome(job.key, summary=done.result())
        except Exception as exc:  # noqa: BLE001 - a failed job is reported, not raised
            outcomes[index] = NestedOutcome(job.key, error=f"{type(exc).__name__}: {exc}".splitlines()[0][:2000])
            get_run_logger().warning("%s failed: %s", job.key, outcomes[index].error)
    return [outcomes[i] for i in range(len(jobs))]


def train_all(jobs: list[NestedJob], runner: RunnerConfig, max_concurrent: Optional[int], base_dir: Path,
              parent_run_id: str, label: str) -> list[NestedOutcome]:
    """Train `jobs` through `runner` (threads, Dask or Ray) as nested runs of `parent_run_id`."""
    from flows.task_runners import build_task_runner, cluster_env, describe, loopback_warning, worker_env

    if not jobs:
        return []
    concurrency = max(1, min(max_concurrent or len(jobs), len(jobs)))
    jobs = [_portable(job) for job in jobs]
    base_dir = Path(base_dir).resolve()
    if runner.type == "thread":
        _guard_progress_bars()
        _warm_imports({job.pipeline.modality for job in jobs})
    env = cluster_env(runner, concurrency, worker_env())
    get_run_logger().info("%s: %d jobs on %s", label, len(jobs), describe(runner, concurrency))
    warning = loopback_warning(runner, env)
    if warning:
        get_run_logger().warning(warning)
    subflow = run_nested.with_options(task_runner=build_task_runner(runner, concurrency, env))
    return subflow(jobs, base_dir, parent_run_id, label, concurrency, current_options())


def _portable(job: NestedJob) -> NestedJob:
    """The job with a tracking URI that means the same store in any process (a relative sqlite path is made
    absolute: a cluster worker may run in another folder)."""
    spec = job.pipeline.spec
    uri = absolute_uri(resolve_tracking_uri(spec.tracking.uri))
    if uri == spec.tracking.uri:
        return job
    tracking = spec.tracking.model_copy(update={"uri": uri})
    pipeline = ResolvedPipeline(spec.model_copy(update={"tracking": tracking}))
    return NestedJob(job.key, pipeline, job.overrides, job.tags)


def _guard_progress_bars() -> None:
    """tqdm's `thread_map` (used by datasets) deletes tqdm's class lock after use when it created it, which breaks
    bars of a concurrent thread ("type object 'tqdm' has no attribute '_lock'"): create the lock up front."""
    from tqdm import std

    std.tqdm.get_lock()


def _warm_imports(modalities: set[str]) -> None:
    """Import, in this one thread, what the job bodies import: two threads resolving a lazy module's names at
    once (transformers) fail with "cannot import name 'AutoTokenizer' from 'transformers'"."""
    from tasks.registry import load_components

    load_components()
    if "text" in modalities:
        import mlflow.transformers  # noqa: F401
        import transformers
        from transformers import trainer_pt_utils  # noqa: F401
        from transformers.models.auto import configuration_auto  # noqa: F401

        for name in ("AutoConfig", "AutoTokenizer", "AutoModelForSequenceClassification", "DataCollatorWithPadding",
                     "Trainer", "TrainerCallback", "TrainingArguments", "pipeline"):
            getattr(transformers, name)
    if "tabular" in modalities:
        import mlflow.pytorch  # noqa: F401
        import torch.export  # noqa: F401
