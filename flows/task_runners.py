"""Build the Prefect task runner a pipeline's `runner:` section asks for, and the environment its workers need.

Workers of a local Dask or Ray cluster are separate processes: they must talk to the same Prefect API as the flow
(else each starts a temporary server of its own, several seconds each) and find the same MLflow store and
offline settings. They get them explicitly: through the Dask nannies' `env`, or Ray's `runtime_env`."""
from __future__ import annotations

import os
from typing import Any

from tasks.pipeline.runner import RunnerConfig
from tasks.tracking.logger import absolute_uri

#: settings a worker process must share with the flow (when set here)
SHARED_ENV = ("PREFECT_API_URL", "PREFECT_API_KEY", "MLFLOW_TRACKING_URI", "FUSEFLOW_CACHE_DIR",
              "PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "HF_HUB_OFFLINE",
              "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM",
              "PREFECT_RESULTS_LOCAL_STORAGE_PATH", "PREFECT_LOGGING_LEVEL")


def current_api_url() -> str | None:
    """The Prefect API this flow talks to (a server, or the ephemeral server's local address)."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return str(client.api_url).rstrip("/")
    except Exception:  # noqa: BLE001 - no API reachable: workers fall back to Prefect's own choice
        return None


def worker_env() -> dict[str, str]:
    """What a worker process needs from this one: the Prefect API in use, the MLflow store (a relative sqlite path
    made absolute: a worker may start in another folder), offline settings."""
    env = {key: os.environ[key] for key in SHARED_ENV if os.environ.get(key)}
    if "PREFECT_API_URL" not in env:
        url = current_api_url()
        if url:
            env["PREFECT_API_URL"] = url
    if "MLFLOW_TRACKING_URI" in env:
        env["MLFLOW_TRACKING_URI"] = absolute_uri(env["MLFLOW_TRACKING_URI"])
    return env


def loopback_warning(config: RunnerConfig, env: dict[str, str]) -> str | None:
    """A warning when workers of a remote cluster would be told to reach a Prefect API on this machine's loopback."""
    from urllib.parse import urlparse

    host = urlparse(env.get("PREFECT_API_URL", "")).hostname or ""
    if config.address and config.address != "auto" and host in ("127.0.0.1", "localhost", "::1"):
        return (f"runner.address {config.address}: the workers are told PREFECT_API_URL={env['PREFECT_API_URL']}, a "
                "loopback address they cannot reach from another machine; set PREFECT_API_URL to a server they can "
                "reach (in the workers' environment for Dask)")
    return None


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def runner_workers(config: RunnerConfig) -> int:
    """How many jobs the runner works on at once: `workers`, else one per core (a sweep keeps that many trials in
    flight, so its sampler and pruner learn from the finished ones before the next starts)."""
    return config.workers or default_workers()


def thread_workers(config: RunnerConfig, concurrency: int) -> int:
    """Threads of the thread runner: `workers`, at most `concurrency`."""
    return min(config.workers or concurrency, concurrency)


def local_workers(config: RunnerConfig, concurrency: int) -> int:
    """Worker processes of the local cluster started for `config` (no `address`)."""
    return max(1, min(config.workers or default_workers(), concurrency))


def cluster_env(config: RunnerConfig, concurrency: int, env: dict[str, str]) -> dict[str, str]:
    """`env` plus, for a local cluster, each worker's share of the cores as torch's thread count (OMP_NUM_THREADS):
    Dask and Ray give every worker 1 thread by default, which leaves cores idle when there are more cores than
    workers; more would oversubscribe the CPU."""
    if config.type == "thread" or config.address:
        return env
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, default_workers() // local_workers(config, concurrency)))
    return {**env, "OMP_NUM_THREADS": threads}  # the user's value, when set, also wins over the clusters' default 1


def build_task_runner(config: RunnerConfig, concurrency: int, env: dict[str, str]) -> Any:
    """A Prefect task runner for `config`; `concurrency` caps threads (thread) or local workers (dask, ray)."""
    missing = config.missing_packages()
    if missing:
        raise RuntimeError(missing)
    if config.type == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=thread_workers(config, concurrency))
    if config.type == "dask":
        from prefect_dask import DaskTaskRunner

        if config.address:
            return DaskTaskRunner(address=config.address)
        # one single-threaded worker process per trial: torch already uses the cores of each process
        # `env` reaches the workers through their nannies and wins over Dask's own OMP_NUM_THREADS=1
        return DaskTaskRunner(cluster_kwargs={"n_workers": local_workers(config, concurrency), "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None, "silence_logs": 40, "env": env})
    from flows.ray_runner import SignalKeepingRayTaskRunner

    init = {"runtime_env": {"env_vars": env}, "include_dashboard": False, "log_to_driver": True}
    if config.address:
        return SignalKeepingRayTaskRunner(address=config.address, init_kwargs=init)
    return SignalKeepingRayTaskRunner(init_kwargs={**init, "num_cpus": local_workers(config, concurrency)})


def describe(config: RunnerConfig, concurrency: int) -> str:
    if config.type == "thread":
        return f"threads (up to {thread_workers(config, concurrency)} at once)"
    where = config.address or f"a local cluster of {local_workers(config, concurrency)} workers"
    return f"{config.type} on {where}"
