"""Step caching: a Prefect cache policy keyed on a step's config, input data, code and library versions.

Any step task can take it (`@task(cache_policy=StepCachePolicy())`); a flow body binds a task to the run's cache
folder and `--no-cache` setting with `cached_step(task, decisions)`, and tags its MLflow run with the decisions
with `report_cache_use(logger, decisions)`. The results live under the cache folder
(`.fuseflow/cache/` beside pipelines.yaml, or `FUSEFLOW_CACHE_DIR`), which is safe to delete at any time:

    results/   step results (Prefect's persisted results, one file per key), signed with a per-user key and
               verified before loading (tasks/cache/signed_storage.py)
    keys/      Prefect's cache records (metadata of each key)
    locks/     lock files: one run computes a key while the others wait, then read its result
    index.json which MLflow run computed each key, and the last key parts of each step

Each cached step logs "<step>: cached (...)" or "<step>: computed (<why>)", where why names the part of the key
that changed since the step's last run: config (the keys), data (the inputs), code (the modules), versions.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, Optional

from prefect.cache_policies import CachePolicy

from tasks.cache import index as cache_index
from tasks.paths import CACHE_DIR
from tasks.steps.run_logger import run_logger
from tasks.tracking import tags
from tasks.cache.distributions import distribution_versions
from tasks.cache.fingerprint import digest, fingerprint_code, fingerprint_inputs, fingerprint_versions

CACHE_DIR_ENV = "FUSEFLOW_CACHE_DIR"
#: inputs never part of a key: where results are logged and how training is resumed do not change the result
NOT_KEYED = ("logger", "checkpoint", "resume")



def cache_dir(base_dir: Path | str | None = None) -> Path:
    """`FUSEFLOW_CACHE_DIR`, else `.fuseflow/cache` in the project folder (the folder of pipelines.yaml)."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return (Path(base_dir) if base_dir else Path.cwd()).resolve() / CACHE_DIR


@dataclasses.dataclass(frozen=True)
class CacheOptions:
    """Where a run's step results are stored, and whether stored results may be reused (not with --no-cache)."""

    folder: Path
    refresh: bool = False


_OPTIONS: ContextVar[Optional[CacheOptions]] = ContextVar("fuseflow_cache_options", default=None)


@contextlib.contextmanager
def cache_options(folder: Path, no_cache: bool = False) -> Iterator[CacheOptions]:
    """Scope in which `cached_step` binds tasks to `folder` (and recomputes every step when `no_cache`)."""
    options = CacheOptions(Path(folder), no_cache)
    token = _OPTIONS.set(options)
    try:
        yield options
    finally:
        _OPTIONS.reset(token)


def current_options() -> CacheOptions:
    return _OPTIONS.get() or CacheOptions(cache_dir())


@dataclasses.dataclass
class StepCachePolicy(CachePolicy):
    """Key = the step's identity + config + input data content + project code + library versions.

    `exclude` names inputs left out of the key (the logger, a checkpoint callback, the project folder when the
    data's content is fingerprinted instead). `folder` holds the index that explains misses (default: the
    current cache folder)."""

    exclude: tuple[str, ...] = NOT_KEYED
    folder: Optional[Path] = None
    decisions: Optional[dict[str, dict[str, Any]]] = None  # where each decision is also recorded, by step name

    def key_parts(self, fn: Any, inputs: dict[str, Any]) -> dict[str, dict[str, str]]:
        keyed = {k: v for k, v in inputs.items() if k not in self.exclude}
        base_dir = inputs.get("base_dir")
        config, data = fingerprint_inputs(keyed, Path(base_dir) if base_dir else None)
        imported: set[str] = set()
        code = fingerprint_code(fn, keyed, imported)
        versions = {**fingerprint_versions(), **distribution_versions(imported, self.folder)}
        return {"config": config, "data": data, "code": code, "versions": versions}

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> Optional[str]:
        if not task_ctx:
            return None
        task = task_ctx.task
        run_log = run_logger()
        try:
            parts = self.key_parts(task.fn, inputs)
        except TypeError as exc:  # an input that cannot be fingerprinted: never reuse a result for it
            self._decide(task.name, False, f"not cacheable: {exc}", None, None, run_log)
            return None
        identity = f"{task.fn.__module__}.{task.fn.__qualname__}"
        key = digest(identity + repr(sorted((p, sorted(v.items())) for p, v in parts.items())), 32)
        refresh = task.refresh_cache if task.refresh_cache is not None else _refresh_setting()
        cached = not refresh and task_ctx.result_store.exists(key)
        run_id = next((getattr(v, "run_id") for v in inputs.values()
                       if isinstance(getattr(v, "run_id", None), str) and hasattr(v, "log_metrics")), None)
        scope = f"{flow_parameters.get('pipeline', '-')}/{task.name}"
        reason, origin = cache_index.record(self.folder or current_options().folder, scope, key, parts, cached,
                                            refresh, run_id)
        self._decide(task.name, cached, reason, key, origin, run_log)
        return key

    def _decide(self, step: str, cached: bool, reason: str, key: Optional[str], origin: Optional[str],
                run_log: Any) -> None:
        """Log the decision ("cached"/"computed" and why) and record it in `decisions`."""
        status = "cached" if cached else "computed"
        run_log.info("%s: %s (%s)", step, status, reason)
        if self.decisions is not None:
            self.decisions[step] = {"status": status, "reason": reason, "key": key, "origin_run_id": origin}


def _refresh_setting() -> bool:
    from prefect.settings import PREFECT_TASKS_REFRESH_CACHE

    return bool(PREFECT_TASKS_REFRESH_CACHE.value())


@contextlib.contextmanager
def independent_steps() -> Iterator[None]:
    """Cached steps called inside another task (a fusion member's or sweep trial's `train-nested`) commit as each
    one ends, releasing its cache lock, instead of joining the enclosing task's transaction: there they would
    hold the lock of the shared data step until the whole trial ended (serialising the trials), and a failed
    trial would never release the locks of the steps it had read from the cache."""
    from prefect.transactions import Transaction

    token = Transaction.__var__.set(None)
    try:
        yield
    finally:
        Transaction.__var__.reset(token)


def cached_step(task: Any, decisions: Optional[dict[str, dict[str, Any]]] = None) -> "CachedStep":
    """`task` with its results persisted in the current cache folder and reused unless --no-cache; its decision
    ("cached"/"computed" and why) is recorded in `decisions` under the task's name."""
    decisions = {} if decisions is None else decisions
    return CachedStep(_bound(task, decisions), decisions, current_options().folder)


class CachedStep:
    """Call a cached step; a stored result that cannot be read back (a truncated or damaged file) is a miss: it is
    removed with a warning and the step computes again, writing a good one, instead of failing every later run."""

    def __init__(self, task: Any, decisions: dict[str, dict[str, Any]], folder: Path) -> None:
        self.task, self.decisions, self.folder = task, decisions, folder

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from tasks.pipeline.retries import explain_timeout

        try:
            return explain_timeout(self.task.name, self.task, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - only a failed read of a cached result is retried
            decision = self.decisions.get(self.task.name) or {}
            if decision.get("status") != "cached" or not decision.get("key"):
                raise  # the step itself failed: its error stands
            removed = self._remove(decision["key"])
            lock_manager = getattr(self.task.cache_policy, "lock_manager", None)
            if hasattr(lock_manager, "drop_lock"):
                lock_manager.drop_lock(decision["key"])  # the failed read ended without releasing its lock
            run_logger().warning("%s: the cached result could not be read (%s: %s); removed %s and computing "
                                 "again", self.task.name, type(exc).__name__, str(exc).splitlines()[0][:200]
                                 if str(exc) else "", ", ".join(removed) or "nothing")
            result = self.task.with_options(refresh_cache=True)(*args, **kwargs)
            if self.task.name in self.decisions:
                self.decisions[self.task.name]["reason"] = "the cached result was damaged: computed again"
            return result

    def __getattr__(self, name: str) -> Any:
        """The bound task's other members (`submit`, `name`, ...); only a direct call falls back on a damaged result."""
        return getattr(self.task, name)

    def _remove(self, key: str) -> list[str]:
        removed = []
        for sub_folder in ("results", "keys"):
            path = self.folder / sub_folder / key
            if path.exists():
                path.unlink()
                removed.append(f"{sub_folder}/{key}")
        return removed


def _bound(task: Any, decisions: dict[str, dict[str, Any]]) -> Any:
    options = current_options()
    policy = task.cache_policy if isinstance(task.cache_policy, StepCachePolicy) else StepCachePolicy()
    from prefect.transactions import IsolationLevel

    from tasks.cache.locks import ProcessAwareLockManager

    # SERIALIZABLE: runs computing the same key at once (sweep trials, fusion members, parallel `fuseflow run`s, in
    # threads or cluster workers on this machine) take a lock file in turn; the first computes and writes the result,
    # the others then read it, so no one reads a result while it is being written; a killed run's lock is dropped
    from tasks.cache.signed_storage import SignedLocalFileSystem, SignedPickleSerializer

    # results are pickles: every file is signed with this user's key and verified before it is loaded
    policy = dataclasses.replace(policy, folder=options.folder,
                                 key_storage=SignedLocalFileSystem(basepath=str(options.folder / "keys")),
                                 decisions=decisions, isolation_level=IsolationLevel.SERIALIZABLE,
                                 lock_manager=ProcessAwareLockManager(lock_files_directory=options.folder / "locks"))
    from tasks.pipeline.retries import step_options

    return task.with_options(cache_policy=policy, persist_result=True, refresh_cache=options.refresh,
                             result_storage=options.folder / "results",
                             result_serializer=SignedPickleSerializer(), **step_options(task.name))


def report_cache_use(logger: Any, found: dict[str, dict[str, Any]], train_result: Any = None) -> None:
    """Tag the MLflow run with each step's decision (`found`, from `cached_step`); a reused training is tagged with
    the run that trained it and its per-epoch history and summary are logged into this run too, so the run is
    complete on its own."""
    train = found.get("train")
    trained_by = getattr(train_result, "run_id", None)
    if train and trained_by and trained_by != getattr(logger, "run_id", None):
        # identical runs started together all decide "computed"; one trains, the others wait for its lock and read
        # its result: for them the training is reused, with its epoch history
        if train["status"] == "computed":
            train.update(status="cached", reason=f"same key as MLflow run {trained_by} (it trained while this run "
                         "waited for it)")
            if train.get("key"):
                cache_index.credit(current_options().folder, train["key"], trained_by)
        train["origin_run_id"] = trained_by
    found_tags: dict[str, Any] = {tags.cache_step(step): d["status"] for step, d in found.items()}
    found_tags.update({tags.cache_reason(step): d["reason"] for step, d in found.items()})
    if train and train["status"] == "cached":
        found_tags[tags.REUSED_RUN] = train.get("origin_run_id") or "unknown (cache index cleared)"
        # a resumed run reusing the training it did itself before a kill already holds its epochs: log them once
        if getattr(train_result, "history", None) and trained_by != getattr(logger, "run_id", None):
            logger.log_history(train_result.history)
            logger.log_metrics({k: getattr(train_result, k) for k in ("best_epoch", "epochs_run", "train_samples_per_s")
                                if hasattr(train_result, k)})
    if found_tags:
        logger.set_tags(found_tags)
