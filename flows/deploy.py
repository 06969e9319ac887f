"""`fuseflow serve`: each pipeline of pipelines.yaml becomes a Prefect deployment (name, description, tags,
schedules, editable parameters), all served by one long-running process (Prefect's `serve`)."""
from __future__ import annotations

import datetime
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from tasks.errors import ConfigError, ConfigIssue, did_you_mean
from tasks.pipeline.schedule import CronSchedule, IntervalSchedule, RRuleSchedule

if TYPE_CHECKING:  # pragma: no cover
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Schedule

    from flows.spec.project import ProjectFile
    from tasks.pipeline.spec import PipelineSpec

#: the name of the Prefect flow every pipeline runs as (`flows.pipeline.run_pipeline`); deployments are FLOW/PIPELINE
FLOW_NAME = "fuseflow"
START_SERVER_HINT = ("start one with `prefect server start` (or `fuseflow up`, which also starts the MLflow UI and "
                     "serves every pipeline), then `export PREFECT_API_URL=http://127.0.0.1:4200/api`")


def prefect_schedule(schedule: Any) -> "Schedule":
    """One YAML schedule -> a Prefect schedule (`active: false` stays declared, but paused)."""
    from prefect.schedules import Cron, Interval, RRule

    if isinstance(schedule, CronSchedule):
        return Cron(schedule.cron, timezone=schedule.timezone, active=schedule.active)
    if isinstance(schedule, IntervalSchedule):
        return Interval(datetime.timedelta(seconds=float(schedule.interval)), timezone=schedule.timezone,
                        active=schedule.active)
    if isinstance(schedule, RRuleSchedule):
        return RRule(schedule.rrule, timezone=schedule.timezone, active=schedule.active)
    raise TypeError(f"not a schedule: {schedule!r}")


def deployment_parameters(name: str, file: Path, spec: "PipelineSpec | None" = None) -> dict[str, Any]:
    """Default parameters of a pipeline's deployment: its name and file are fixed, the typed hyperparameters (the
    YAML's values) and the free-form overrides editable."""
    from prefect.utilities.annotations import freeze

    from flows.form_schema import hyperparameter_defaults

    typed = {"hyperparameters": hyperparameter_defaults(spec)} if spec is not None else {}
    return {"pipeline": freeze(name), **typed, "overrides": {}, "file": freeze(str(file.resolve()))}


def typed_form(deployment: "RunnerDeployment", spec: "PipelineSpec") -> None:
    """Put the pipeline's typed hyperparameter fields into the deployment's parameter schema, right after
    `pipeline` in the form; the server checks every run's parameters against it (enforce_parameter_schema)."""
    from flows.form_schema import hyperparameters_schema

    properties = deployment._parameter_openapi_schema.properties
    properties["hyperparameters"] = hyperparameters_schema(spec)
    order = ["pipeline", "hyperparameters"] + [k for k in properties if k not in ("pipeline", "hyperparameters")]
    for position, key in enumerate(order):
        properties[key]["position"] = position


def build_deployment(spec: "PipelineSpec", file: Path) -> "RunnerDeployment":
    """The Prefect deployment of one pipeline (deployment name = pipeline name), with its typed form."""
    from prefect.types.entrypoint import EntrypointType

    from flows.pipeline import run_pipeline

    deployment = run_pipeline.to_deployment(
        name=spec.name,
        description=spec.description or f"fuseflow pipeline {spec.name}",
        tags=["fuseflow", *spec.tags],
        schedules=[prefect_schedule(s) for s in spec.schedule],
        triggers=[t.deployment_trigger() for t in spec.triggers],
        parameters=deployment_parameters(spec.name, file, spec),
        entrypoint_type=EntrypointType.MODULE_PATH,  # runs from any folder where fuseflow is installed
        enforce_parameter_schema=True,  # the server refuses a run whose fields are out of range or mistyped
    )
    typed_form(deployment, spec)
    return deployment


def select(project: "ProjectFile", names: Sequence[str]) -> dict[str, "PipelineSpec"]:
    """The validated specs to serve: the named ones, or all; every config problem of the file is reported."""
    from flows.spec.resolve import resolve_all

    unknown = [n for n in names if n not in project.pipelines]
    if unknown:
        raise ConfigError([ConfigIssue(f"unknown pipeline '{n}'{did_you_mean(n, project.names)} "
                                       f"(pipelines: {', '.join(project.names)})", file=str(project.path))
                           for n in unknown])
    resolved = resolve_all(project)
    return {n: resolved[n].spec for n in (names or project.names)}


def api_url() -> str:
    """The Prefect API `serve` talks to; a usage error (exit 2) saying how to start one when none answers."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError([ConfigIssue(f"PREFECT_API_URL is not set: `fuseflow serve` needs a Prefect server; "
                                       f"{START_SERVER_HINT}")])
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise ConfigError([ConfigIssue(f"no Prefect server answers at PREFECT_API_URL={url} "
                                       f"({type(exc).__name__}); {START_SERVER_HINT}")]) from None
    return url


@dataclass
class Stale:
    """A deployment of this pipelines file whose pipeline is gone from it."""

    deployment: str
    paused: int


def pause_removed(project: "ProjectFile") -> list[Stale]:
    """Pause the active schedules of deployments made from this file for pipelines no longer in it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    file = str(project.path.resolve())
    stale = []
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])))
        for dep in deployments:
            if dep.name in project.pipelines or (dep.parameters or {}).get("file") != file:
                continue
            active = [s for s in dep.schedules if s.active]
            for schedule in active:
                client.update_deployment_schedule(dep.id, schedule.id, active=False)
            stale.append(Stale(f"{FLOW_NAME}/{dep.name}", len(active)))
    return stale


def serve_pipelines(file: str | Path, names: Sequence[str] = (), out: Any = None) -> int:
    """Create or update one deployment per pipeline and serve them until Ctrl-C (or SIGTERM)."""
    from prefect import serve

    from flows.spec.project import load_project

    out = out or sys.stdout
    project = load_project(file)
    specs = select(project, names)  # config errors exit 2 before anything touches the server
    url = api_url()
    for item in pause_removed(project):
        print(f"pipeline '{item.deployment.split('/', 1)[1]}' is no longer in {project.path}: paused "
              f"{item.paused} schedule(s) of deployment {item.deployment} (delete it in the Prefect UI or with "
              f"`prefect deployment delete {item.deployment}`)", file=out, flush=True)
    deployments = [build_deployment(spec, project.path) for spec in specs.values()]
    for spec in specs.values():
        schedules = ", ".join([describe(s) for s in spec.schedule]
                              + [f"on {t.on} {getattr(t, 'model', None) or getattr(t, 'pipeline', '')}"
                                 for t in spec.triggers]) or "no schedule (runs start from the UI or API)"
        print(f"serving {FLOW_NAME}/{spec.name}: {schedules}", file=out, flush=True)
    print(f"Prefect API {url}; Ctrl-C stops serving (the deployments' schedules are paused until the next "
          f"`fuseflow serve`)", file=out, flush=True)
    try:
        serve(*deployments, print_starting_message=False)
    finally:
        pause_served(specs)  # Prefect's runner pauses them on SIGTERM but not always on Ctrl-C: make it certain
    print("serving stopped; deployments paused", file=out, flush=True)
    return 0


def pause_served(specs: dict[str, Any]) -> None:
    """Pause the deployments this process served, so no runs pile up while nothing serves them."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for name in specs:
            try:
                client.pause_deployment(client.read_deployment_by_name(f"{FLOW_NAME}/{name}").id)
            except Exception:  # noqa: BLE001 - best effort on the way out; the server may be gone already
                continue


def describe(schedule: Any) -> str:
    """A short human description of a YAML schedule, e.g. `cron '0 3 * * *' UTC (paused)`."""
    if isinstance(schedule, CronSchedule):
        text = f"cron '{schedule.cron}'"
    elif isinstance(schedule, IntervalSchedule):
        text = f"every {float(schedule.interval):g}s"
    else:
        text = f"rrule '{schedule.rrule}'"
    text += f" {schedule.timezone}" if schedule.timezone else ""
    return text + ("" if schedule.active else " (paused)")
