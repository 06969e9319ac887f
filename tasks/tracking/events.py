"""Prefect events fuseflow emits, for automations (a notification) and deployment triggers (`triggers:` in
pipelines.yaml): `fuseflow.model.promoted` when an alias moves to a new version, `fuseflow.run.failed` when a run
fails. Emitting never fails a run: without a Prefect API nothing is sent."""
from __future__ import annotations

import logging
from typing import Any, Optional

log = logging.getLogger("fuseflow")

PROMOTED = "fuseflow.model.promoted"
RUN_FAILED = "fuseflow.run.failed"


def model_resource(name: str) -> str:
    """The resource id of registered model `name` (what a trigger matches)."""
    return f"fuseflow.model.{name}"


def pipeline_resource(name: str) -> str:
    return f"fuseflow.pipeline.{name}"


def emit(event: str, resource: dict[str, str], payload: dict[str, Any],
         related: Optional[list[dict[str, str]]] = None) -> Optional[Any]:
    """Emit one event through Prefect's events client; None (and a debug line) when it cannot be sent."""
    try:
        from prefect.events import emit_event

        return emit_event(event=event, resource=resource, payload=payload, related=related)
    except Exception as exc:  # noqa: BLE001 - an event is a notification, never a reason to fail
        log.debug("event %s not emitted: %s", event, exc)
        return None


def emit_promoted(decision: Any, run_id: str, pipeline: str = "") -> Optional[Any]:
    """`fuseflow.model.promoted` for a decision that moved the alias: model, version, alias, metric and value."""
    resource = {"prefect.resource.id": model_resource(decision.model), "prefect.resource.name": decision.model,
                "fuseflow.model.version": str(decision.version), "fuseflow.model.alias": str(decision.alias or "")}
    payload = {"model": decision.model, "version": str(decision.version), "alias": decision.alias,
               "metric": decision.metric, "value": decision.value, "previous_version": decision.champion_version,
               "previous_value": decision.champion_value, "run_id": run_id, "pipeline": pipeline}
    related = [{"prefect.resource.id": f"mlflow.run.{run_id}", "prefect.resource.role": "mlflow-run"}]
    return emit(PROMOTED, resource, payload, related)


def emit_run_failed(pipeline: str, run_id: str, error: str) -> Optional[Any]:
    """`fuseflow.run.failed` for a pipeline run that failed: the pipeline, its MLflow run and the error line."""
    resource = {"prefect.resource.id": pipeline_resource(pipeline), "prefect.resource.name": pipeline}
    return emit(RUN_FAILED, resource, {"pipeline": pipeline, "run_id": run_id, "error": error[:2000]},
                [{"prefect.resource.id": f"mlflow.run.{run_id}", "prefect.resource.role": "mlflow-run"}])
