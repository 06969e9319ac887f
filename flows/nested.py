"""Train several pipelines as nested MLflow runs under one parent run (fusion members, sweep trials), through the
task runner the pipeline's `runner:` section names, at most `max_concurrent` at once.

The jobs run in a subflow whose task runner is built from the config, so the same flow runs on threads, a Dask
cluster or a Ray cluster. They come from a feed (`JobFeed`): a fixed list (fusion members), or a sweep's search that
asks its sampler for the next trial when a worker is free and tells the study how each ended. A failed job is
reported, not raised: the caller decides (a fusion stops, a sweep goes on); a pruned trial is an outcome too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol

from prefect import flow, get_run_logger
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from flows.bodies.training import run_training
from tasks.cache.policy import CacheOptions, cache_options, current_options, independent_steps
from tasks.pipeline.resolved import ResolvedPipeline
from tasks.pipeline.runner import RunnerConfig
from tasks.pipeline.summary import RunSummary
from tasks.steps.step_task import step
from tasks.tracking.logger import absolute_uri, resolve_tracking_uri


@dataclass
class NestedJob:
    """One training pipeline to run in a nested run: `key` names it in logs and the Prefect UI (member, trial-3)."""

    key: str
    pipeline: ResolvedPipeline
    overrides: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: watches the job's epochs where it trains (a sweep trial's pruning reporter); picklable
    observer: Optional[Any] = None


@dataclass
class Pruned:
    """What a pruned trial's task returns: the epoch it stopped after, and why."""

    epoch: int
    message: str


@dataclass
class NestedOutcome:
    key: str
    summary: Optional[RunSummary] = None
    error: Optional[str] = None
    pruned: Optional[Pruned] = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.pruned is None


class JobFeed(Protocol):
    """Where `run_nested` gets its jobs: `next_job()` (None: no more), `job_done(job, outcome)` as each ends."""

    def next_job(self) -> Optional[NestedJob]: ...

    def job_done(self, job: NestedJob, outcome: NestedOutcome) -> None: ...


class ListFeed:
    """A fixed list of jobs; `outcomes` in the list's order once all are done. (Slots: Prefect records a flow's
    parameters, and an object without `__dict__` is recorded by its type name only.)"""

    __slots__ = ("_queue", "_keys", "_outcomes")

    def __init__(self, jobs: list[NestedJob]) -> None:
        self._queue = list(jobs)
        self._keys = [job.key for job in jobs]
        self._outcomes: dict[str, NestedOutcome] = {}

    def next_job(self) -> Optional[NestedJob]:
        return self._queue.pop(0) if self._queue else None

    def job_done(self, job: NestedJob, outcome: NestedOutcome) -> None:
        self._outcomes[job.key] = outcome

    @property
    def outcomes(self) -> list[NestedOutcome]:
        return [self._outcomes[key] for key in self._keys]


@step(name="train-nested", task_run_name="train-{job.key}", cache_policy=NO_CACHE, persist_result=False)
def train_nested(job: NestedJob, base_dir: Path, parent_run_id: str, cache: CacheOptions) -> RunSummary | Pruned:
    """Train the job's pipeline in a nested MLflow run (in this process, a thread, or a cluster worker); a trial
    its pruner stopped returns `Pruned` (its run is closed KILLED and tagged pruned)."""
    from flows.tracking_run import tracked_run
    from tasks.registry import load_components
    from tasks.train.observers import TrialPruned, observing

    load_components()  # a fresh worker process: the registries before any config is used

    try:
        with observing(job.observer), tracked_run(job.pipeline.spec, job.overrides, base_dir,
                                                  parent_run_id=parent_run_id, extra_tags=job.tags) as logger, \
                cache_options(cache.folder, cache.refresh), independent_steps():
            return run_training(job.pipeline, logger, base_dir)
    except TrialPruned as pruned:
        get_run_logger().info("%s: %s", job.key, pruned)
        return Pruned(pruned.epoch, str(pruned))


@flow(name="fuseflow-nested", flow_run_name="{label}", persist_result=False, validate_parameters=False)
def run_nested(feed: Any, base_dir: Path, parent_run_id: str, label: str, max_concurrent: int,
               cache: CacheOptions) -> None:
    """Submit the feed's jobs (`NestedJob`s), keeping at most `max_concurrent` in flight, and hand each outcome
    back to the feed as the job ends; a free worker takes the feed's next job at once. (`feed` is typed loosely:
    Prefect builds this flow's parameter schema when the module is imported.)"""
    in_flight: dict[Any, NestedJob] = {}
    exhausted = False
    while True:
        while not exhausted and len(in_flight) < max_concurrent:
            job = feed.next_job()
            if job is None:
                exhausted = True
                break
            job = _portable(job)
            in_flight[train_nested.submit(job, base_dir, parent_run_id, cache)] = job
        if not in_flight:
            return
        done = next(as_completed(list(in_flight)))
        job = in_flight.pop(done)
        done.wait()  # as_completed can yield before the task's final state is recorded
        try:
            # what the task raised; for a worker that died (killed, out of memory) the cluster's error, whereas
            # the task's state in the API would still say RUNNING
            result = done.result()
            outcome = (NestedOutcome(job.key, pruned=result) if isinstance(result, Pruned)
                       else NestedOutcome(job.key, summary=result))
        except Exception as exc:  # noqa: BLE001 - a failed job is reported, not raised
            outcome = NestedOutcome(job.key, error=f"{type(exc).__name__}: {exc}".splitlines()[0][:2000])
            get_run_logger().warning("%s failed: %s", job.key, outcome.error)
        feed.job_done(job, outcome)


def train_all(jobs: list[NestedJob], runner: RunnerConfig, max_concurrent: Optional[int], base_dir: Path,
              parent_run_id: str, label: str) -> list[NestedOutcome]:
    """Train `jobs` through `runner` (threads, Dask or Ray) as nested runs of `parent_run_id`; their outcomes in
    order."""
    if not jobs:
        return []
    feed = ListFeed(jobs)
    train_feed(feed, len(jobs), {job.pipeline.modality for job in jobs}, runner, max_concurrent, base_dir,
               parent_run_id, label)
    return feed.outcomes


def train_feed(feed: JobFeed, total: int, modalities: set[Optional[str]], runner: RunnerConfig,
               max_concurrent: Optional[int], base_dir: Path, parent_run_id: str, label: str) -> None:
    """Train the jobs of `feed` (at most `total`, of `modalities`) through `runner` as nested runs of
    `parent_run_id`."""
    from flows.task_runners import build_task_runner, cluster_env, describe, loopback_warning, worker_env

    if total <= 0:
        return
    concurrency = max(1, min(max_concurrent or total, total))
    base_dir = Path(base_dir).resolve()
    if runner.type == "thread":
        _guard_progress_bars()
        _warm_imports(modalities)
    env = cluster_env(runner, concurrency, worker_env())
    get_run_logger().info("%s: %d jobs on %s", label, total, describe(runner, concurrency))
    warning = loopback_warning(runner, env)
    if warning:
        get_run_logger().warning(warning)
    subflow = run_nested.with_options(task_runner=build_task_runner(runner, concurrency, env))
    subflow(feed, base_dir, parent_run_id, label, concurrency, current_options())


def _portable(job: NestedJob) -> NestedJob:
    """The job with a tracking URI that means the same store in any process (a relative sqlite path is made
    absolute: a cluster worker may run in another folder)."""
    spec = job.pipeline.spec
    uri = absolute_uri(resolve_tracking_uri(spec.tracking.uri))
    if uri == spec.tracking.uri:
        return job
    tracking = spec.tracking.model_copy(update={"uri": uri})
    pipeline = ResolvedPipeline(spec.model_copy(update={"tracking": tracking}))
    return NestedJob(job.key, pipeline, job.overrides, job.tags, job.observer)


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
