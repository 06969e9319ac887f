"""`fuseflow rerun RUN_ID`: run again exactly what an earlier MLflow run ran.

The config is the resolved `pipeline.yaml` logged with that run, not today's pipelines.yaml. Before running, it
warns where the git commit or the package versions differ from those recorded; after, where the data digest
differs, and it compares the test metrics. The new run is tagged `fuseflow.rerun_of=RUN_ID`. Steps are recomputed
(a reproduction that read its results from the cache would prove nothing) unless `--use-cache` is given.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from tasks.errors import ConfigError, ConfigIssue
from tasks.pipeline.summary import RerunSummary
from tasks.paths import RERUN_FILE_PREFIX

def loadable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The logged resolved config in the shape pipelines.yaml takes (no `name`, steps as `{name: options}`)."""
    config = dict(config)
    config.pop("name", None)
    steps = []
    for step in config.get("preprocess") or []:
        if isinstance(step, dict) and "name" in step:
            options = {k: v for k, v in step.items() if k != "name"}
            steps.append({step["name"]: options})
        else:
            steps.append(step)
    if "preprocess" in config:
        config["preprocess"] = steps
    return config


def recorded_config(client: Any, run_id: str) -> tuple[str, dict[str, Any]]:
    """(pipeline name, resolved config) from the run's `pipeline.yaml` artifact."""
    from mlflow.artifacts import download_artifacts

    try:
        path = download_artifacts(run_id=run_id, artifact_path="pipeline.yaml", tracking_uri=client.tracking_uri)
    except Exception as exc:  # noqa: BLE001 - missing artifact or run
        raise ConfigError([ConfigIssue(f"run {run_id} has no pipeline.yaml artifact to replay ({exc})".splitlines()[0],
                                       origin="rerun")]) from None
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    (name, config), = (data.get("pipelines") or {}).items()
    return name, config


def differences(run: Any, project_dir: Path) -> list[str]:
    """Warnings where this checkout or environment differs from what the run recorded."""
    from flows.tracking_run import git_commit
    from tasks.tracking import tags
    from tasks.cache.fingerprint import fingerprint_versions

    run_tags = run.data.tags
    warnings = []
    recorded_commit, commit = run_tags.get(tags.GIT_COMMIT), git_commit(project_dir)
    if recorded_commit and recorded_commit != commit:
        warnings.append(f"git commit differs: the run had {recorded_commit[:12]}, this checkout is "
                        f"{(commit or 'not a git checkout')[:12]}")
    if tags.VERSIONS in run_tags:
        recorded = json.loads(run_tags[tags.VERSIONS])
        now = fingerprint_versions()
        changed = [f"{k} {recorded.get(k, '-')} -> {now.get(k, '-')}" for k in sorted(set(recorded) | set(now))
                   if recorded.get(k) != now.get(k)]
        if changed:
            warnings.append("package versions differ: " + ", ".join(changed))
    else:
        warnings.append("the run recorded no package versions; they cannot be compared")
    return warnings


def dataset_digests(client: Any, run_id: str) -> set[str]:
    """Digests of the run's training inputs (runs also log their validation and test splits: not compared, as a
    run logged before they were would then always differ)."""
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    return {d.dataset.digest for d in client.get_run(run_id).inputs.dataset_inputs
            if {t.key: t.value for t in d.tags}.get(MLFLOW_DATASET_CONTEXT, "training") == "training"}


def warn_on_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def rerun(run_id: str, tracking_uri: str | None = None, use_cache: bool = False, project_dir: Path | str = ".",
          warn: Callable[[str], None] = warn_on_stderr) -> RerunSummary:
    """Replay run `run_id`; returns the new run's summary with its `warnings` (each also passed to `warn` as
    soon as it is known) and the `original` run's test metrics. With `tracking_uri`, the rerun is recorded in that
    store too (MLFLOW_TRACKING_URI is set for the call)."""
    from flows.env import environment

    with environment({"MLFLOW_TRACKING_URI": tracking_uri} if tracking_uri else {}):
        return _rerun(run_id, use_cache, Path(project_dir), warn)


def _rerun(run_id: str, use_cache: bool, project_dir: Path, warn: Callable[[str], None]) -> RerunSummary:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from tasks.tracking.logger import resolve_tracking_uri

    client = MlflowClient(resolve_tracking_uri())
    try:
        original = client.get_run(run_id)
    except MlflowException:
        raise ConfigError([ConfigIssue(f"no MLflow run {run_id} in {client.tracking_uri}", origin="rerun")]) from None
    name, config = recorded_config(client, run_id)
    project_dir = Path(project_dir).resolve()
    warnings = differences(original, project_dir)
    for warning in warnings:
        warn(warning)
    # In the project folder, so that relative data paths resolve as they did; removed afterwards.
    file = project_dir / f"{RERUN_FILE_PREFIX}{run_id[:12]}.yaml"
    file.write_text(yaml.safe_dump({"pipelines": {name: loadable_config(config)}}, sort_keys=False), encoding="utf-8")
    try:
        from flows.spec.project import load_project
        from flows.spec.resolve import resolve

        resolve(load_project(file), name)  # a config that no longer validates fails here, before any run starts
        from flows.pipeline import run_pipeline

        summary = run_pipeline(name, None, str(file), no_cache=not use_cache, rerun_of=run_id)
    finally:
        file.unlink(missing_ok=True)
    before, after = dataset_digests(client, run_id), dataset_digests(client, summary.run_id)
    if before and after and before != after:
        warnings.append(f"data digest differs: the run had {', '.join(sorted(before))}, "
                        f"now {', '.join(sorted(after))}")
        warn(warnings[-1])
    return RerunSummary(summary, run_id, {k: v for k, v in original.data.metrics.items() if k.startswith("test_")},
                        warnings)


def print_rerun(summary: RerunSummary) -> None:
    """The original and new test metrics side by side, and whether they match."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    run = summary.run
    console.print(f"MLflow run id: {run.run_id} (reproduces {summary.rerun_of})")
    table = Table("metric", "original", "rerun", title=f"{run.pipeline}: test metrics")
    same = True
    for key, value in run.metrics.items():
        old = summary.original.get(key)
        same &= old is not None and abs(old - value) <= 1e-9 * max(1.0, abs(old))
        table.add_row(key, "-" if old is None else f"{old:.4f}", f"{value:.4f}")
    console.print(table)
    print("metrics match the original run" if same else "metrics differ from the original run")
