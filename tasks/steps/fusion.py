"""The Prefect tasks of a fusion: load each member, and fit the fusion method (thin wrappers, testable via `.fn`)."""
from __future__ import annotations

from typing import Any, Optional

from tasks.steps.step_task import step
from prefect.cache_policies import NO_CACHE


@step(name="load-member", task_run_name="load-{name}", cache_policy=NO_CACHE, persist_result=False)
def load_member(name: str, uri: str, tracking_uri: str) -> Any:
    """Download a member's model and rebuild it (network + preprocessing) to read its logits (its URI resolved in
    `tracking_uri`: a member's `runs:/` URI names a LoggedModel, which MLflow looks up in the global store)."""
    from tasks.fusion.members.load import load_member as load
    from tasks.tracking.logged_model import model_uris_in

    with model_uris_in(tracking_uri):
        return load(name, uri, tracking_uri)


@step(name="fuse", cache_policy=NO_CACHE, persist_result=False)
def fuse_members(method: Any, members: list[Any], data: Any, metric_names: list[str], bootstrap: Any,
                 require_gain: bool, sources: list[str], run_ids: list[Optional[str]]) -> Any:
    """Fit the method on validation, score test once, decide what ships."""
    from tasks.fusion.fuse import fuse

    return fuse(method, members, data, metric_names, bootstrap, require_gain, sources, run_ids)
