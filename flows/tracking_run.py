"""Open the pipeline's MLflow run, tag and parametrise it, and close it with the right status."""
from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import yaml

from flows.signals import is_termination
from tasks.pipeline.spec import PipelineSpec
from tasks.tracking import tags
from tasks.tracking.child_runs import close_unfinished_children
from tasks.tracking.logger import RunLogger, artifact_root_for, flatten, prepare_store, resolve_tracking_uri
from tasks.train.observers import TrialPruned

log = logging.getLogger("fuseflow")



def resolved_config(spec: PipelineSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)


def config_hash(spec: PipelineSpec) -> str:
    """Hash of everything that shapes the result (not description, tags or schedules)."""
    data = resolved_config(spec)
    for key in ("description", "tags", "schedule", "tracking", "runner", "ui"):
        data.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def prefect_context() -> dict[str, str | None]:
    """The Prefect flow run this code runs in (id, deployment, UI link), when there is one."""
    try:
        from prefect.runtime import deployment, flow_run
    except ImportError:  # pragma: no cover
        return {}
    from prefect.utilities.urls import url_for

    run_id = flow_run.id
    # the UI's own flow-run link (`flow_run.ui_url` gives 'None/flow-runs/...' on the ephemeral API, which has no UI)
    url = url_for("flow-run", obj_id=run_id) if run_id else None
    return {tags.FLOW_RUN_ID: run_id, tags.FLOW_RUN_URL: url, tags.DEPLOYMENT: deployment.name}


def deployment_url() -> Optional[str]:
    """The Prefect UI page of the deployment this flow run came from, when it came from one."""
    try:
        from prefect.runtime import deployment
        from prefect.utilities.urls import url_for
    except ImportError:  # pragma: no cover
        return None
    return url_for("deployment", obj_id=deployment.id) if deployment.id else None


def _markdown_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_description(pipeline: str, changes: Mapping[str, Any] | None, context: Mapping[str, Any],
                    deployment_link: Optional[str] = None) -> str:
    """The MLflow run's description (markdown): the pipeline, what this run changed, links to its Prefect flow run
    and deployment."""
    lines = [f"**fuseflow pipeline `{pipeline}`**", ""]
    if changes:
        lines += ["Changed from pipelines.yaml:", ""]
        lines += [f"- `{key}` = `{_markdown_value(value)}`" for key, value in changes.items()]
    else:
        lines.append("As in pipelines.yaml (nothing changed).")
    flow_url, deployment = context.get(tags.FLOW_RUN_URL), context.get(tags.DEPLOYMENT)
    if flow_url or context.get(tags.FLOW_RUN_ID):
        run_link = f"[{context.get(tags.FLOW_RUN_ID)}]({flow_url})" if flow_url else f"`{context.get(tags.FLOW_RUN_ID)}`"
        lines += ["", f"Prefect flow run: {run_link}"]
    if deployment:
        text = f"fuseflow/{deployment}"
        lines.append(f"Prefect deployment: [{text}]({deployment_link})" if deployment_link else
                     f"Prefect deployment: `{text}`")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RunOutcome:
    """How a failed run's MLflow run was left (attached to the exception as `fuseflow_run`): `status` is what the
    store says now (`FAILED`, `KILLED`, or `RUNNING` when it could not be marked `wanted`, `problem` saying why)."""

    run_id: str
    status: str
    problem: Optional[str] = None
    pipeline: str = "NAME"
    wanted: str = "FAILED"

    def describe(self) -> str:
        """The run's true state and how to continue it, for the CLI's error line."""
        resume = f"`fuseflow run {self.pipeline} --resume` continues it from its last checkpoint"
        if self.status == "RUNNING":
            return (f"the MLflow run {self.run_id} could not be marked {self.wanted} ({self.problem}): it stays "
                    f"RUNNING; once the tracking server answers, {resume}")
        if self.status == "KILLED":  # stopped from outside (Ctrl-C, SIGTERM): nothing to fix first
            return f"the MLflow run {self.run_id} is marked KILLED; {resume}"
        return f"the MLflow run {self.run_id} is marked {self.status}; once the cause is fixed, {resume}"


def close_run(client: Any, run_id: str, status: str, error: str) -> Optional[str]:
    """Tag the error and end the run with `status`; None, or why the store refused (a tracking server gone)."""
    try:
        client.set_tag(run_id, tags.ERROR, error)
        client.set_terminated(run_id, status)
    except Exception as exc:  # noqa: BLE001 - reported with the run's true state
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    return None


def experiment_id(client: Any, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root_for(uri))
    except Exception:  # noqa: BLE001 - another process created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def create_run_once(client: Any, experiment: str, run_name: Optional[str], run_tags: dict[str, str]) -> Any:
    """Create a run that carries a random `fuseflow.open_token`, and delete any copy of it (see `delete_copies`)."""
    run = client.create_run(experiment, run_name=run_name, tags={**run_tags, tags.OPEN_TOKEN: uuid.uuid4().hex})
    delete_copies(client, run)
    return run


def delete_copies(client: Any, run: Any) -> None:
    """Close and delete the other runs with `run`'s open token. MLflow's HTTP client retries a request whose answer
    was lost or late (a tracking server restarting, a locked database), so one create can make two runs: the copy
    nobody holds would stay RUNNING for ever. Looked for after the create and again when the run ends (a late
    original commits after the retry's answer); best effort: the store may be the thing that is failing."""
    from mlflow.entities import ViewType

    token = run.data.tags.get(tags.OPEN_TOKEN)
    if not token:
        return
    try:
        copies = client.search_runs([run.info.experiment_id], filter_string=f"tags.`{tags.OPEN_TOKEN}` = '{token}'",
                                    run_view_type=ViewType.ACTIVE_ONLY, max_results=10)
        for copy in copies:
            if copy.info.run_id != run.info.run_id:
                log.warning("MLflow run %s is a copy of run %s (a retried request created it twice): deleted",
                            copy.info.run_id, run.info.run_id)
                close_run(client, copy.info.run_id, "FAILED", f"a copy of run {run.info.run_id}, made by a "
                                                              "retried request; deleted")
                client.delete_run(copy.info.run_id)
    except Exception as exc:  # noqa: BLE001 - the run itself goes on; a copy left is found at its end
        log.warning("could not look for copies of MLflow run %s: %s", run.info.run_id, exc)


def log_opening(logger: RunLogger, spec: PipelineSpec, overrides: Mapping[str, Any] | None,
                previous: Any = None) -> None:
    """Log the run's params and pipeline.yaml. A resumed run (`previous`) gets only what it lacks: the run it
    continues may have stopped while opening (its tracking server gone mid-way), and MLflow params cannot change."""
    config = resolved_config(spec)
    params = flatten({k: v for k, v in config.items() if k not in ("description", "tags", "ui")})
    params.update({f"override.{k}": v for k, v in (overrides or {}).items()})
    logged = dict(previous.data.params) if previous is not None else {}
    logger.log_params({k: v for k, v in params.items() if k[:250] not in logged})
    if previous is None or "pipeline.yaml" not in {f.path for f in logger.client.list_artifacts(logger.run_id)}:
        logger.log_text(yaml.safe_dump({"pipelines": {spec.name: config}}, sort_keys=False), "pipeline.yaml")


@contextmanager
def tracked_run(spec: PipelineSpec, overrides: Mapping[str, Any] | None, base_dir: Path,
                parent_run_id: str | None = None, extra_tags: Mapping[str, Any] | None = None,
                resume: bool = False, run_name: Optional[str] = None) -> Iterator[RunLogger]:
    """One MLflow run for one pipeline run: FINISHED on success, FAILED (with the error as a tag) on an
    exception, KILLED on Ctrl-C. With `resume`, the latest unfinished run of this pipeline and config is
    reopened instead of creating one (see flows/resume.py). The run is named `tracking.run_name`, else
    `run_name` (e.g. `digits-mlp lr=0.003`), and described in markdown with its changes and Prefect links."""
    from flows.resume import find_resumable_run, process_tags, reopen_run
    from tasks.cache.fingerprint import fingerprint_versions
    from mlflow import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from tasks.tracking.phases import PhaseTimer, log_timings

    timer = PhaseTimer()
    uri = resolve_tracking_uri(spec.tracking.uri)
    prepare_store(uri)
    client = MlflowClient(uri)
    exp = experiment_id(client, spec.experiment, uri)
    context = prefect_context()
    run_tags = {tags.PIPELINE: spec.name, tags.CONFIG_HASH: config_hash(spec), tags.GIT_COMMIT: git_commit(base_dir),
                tags.OVERRIDES: json.dumps(dict(overrides or {})) if overrides else None,
                tags.VERSIONS: json.dumps(fingerprint_versions()), **process_tags(),
                tags.NOTE: run_description(spec.name, overrides, context, deployment_url()),
                **context, **(extra_tags or {})}
    if parent_run_id:
        run_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    previous = find_resumable_run(client, exp, spec.name, run_tags[tags.CONFIG_HASH]) if resume else None
    if previous is not None:
        reopen_run(client, previous, {**context, **(extra_tags or {})})
        run = previous
    else:
        if resume:
            log.info("no unfinished run of '%s' with this config to resume: starting a new run", spec.name)
        run = create_run_once(client, exp, spec.tracking.run_name or run_name or None,
                              {k: str(v) for k, v in run_tags.items() if v is not None})
    logger = RunLogger(run.info.run_id, uri)
    logger.phases = timer
    try:
        log_opening(logger, spec, overrides, previous)
        log.info("MLflow run %s (experiment '%s', %s)", run.info.run_id, spec.experiment, uri)
        timer.opened()
        yield logger
    except TrialPruned as pruned:  # a sweep's pruner stopped the trial: its epochs are logged, nothing failed
        client.set_tag(run.info.run_id, tags.SWEEP_TRIAL_STATE, "pruned")
        client.set_tag(run.info.run_id, tags.SWEEP_PRUNED_EPOCH, str(pruned.epoch))
        logger.append_note(f"**pruned**: {pruned}")
        client.set_terminated(run.info.run_id, "KILLED")
        log_timings(timer, logger, log)
        raise
    except KeyboardInterrupt as interrupt:
        close_unfinished_children(client, run.info.run_id, "KILLED", "its parent run was interrupted (Ctrl-C)")
        client.set_tag(run.info.run_id, tags.ERROR, "interrupted (Ctrl-C)")
        client.set_terminated(run.info.run_id, "KILLED")
        interrupt.fuseflow_run = RunOutcome(run.info.run_id, "KILLED", None, spec.name, "KILLED")
        raise
    except BaseException as exc:
        if is_termination(exc):  # SIGTERM: stopped from outside, not failed
            status, error = "KILLED", (f"terminated by SIGTERM; `fuseflow run {spec.name} --resume` continues it "
                                       "from its last checkpoint")
        else:
            status, error = "FAILED", f"{type(exc).__name__}: {exc}"[:5000]
        problem = close_run(client, run.info.run_id, status, error)
        if problem is None:  # the store answers: copies of the run, and trials and members whose workers died
            delete_copies(client, run)  # with it, are closed too
            close_unfinished_children(client, run.info.run_id, status, f"its parent run {run.info.run_id} ended "
                                      f"{status}: {error}"[:5000])
        exc.fuseflow_run = RunOutcome(run.info.run_id, status if problem is None else "RUNNING", problem,
                                      spec.name, status)
        if status == "FAILED":
            from tasks.tracking.events import emit_run_failed

            emit_run_failed(spec.name, run.info.run_id, error)
        if problem is None and status == "FAILED":
            log_timings(timer, logger, log)  # after the run is marked: where a failed run's time went
        raise
    else:
        try:
            log_timings(timer, logger, log)
            delete_copies(client, run)
            client.set_terminated(run.info.run_id, "FINISHED")
        except Exception as exc:  # the store went away at the very end: the run's outputs are all logged
            exc.fuseflow_run = RunOutcome(run.info.run_id, "RUNNING", f"{type(exc).__name__}: {exc}"[:300],
                                          spec.name, "FINISHED")
            raise
