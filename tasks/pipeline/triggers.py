"""`triggers:` of a pipeline: Prefect events that start its deployment under `fuseflow serve`, with no schedule —
e.g. a scoring pipeline that runs whenever a new champion is promoted (`- on: promoted, model: NAME`)."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field

from tasks.registry import StrictModel


class PromotedTrigger(StrictModel):
    """`- on: promoted, model: NAME` (optionally `alias: champion`): run when a version of NAME is promoted."""

    on: Literal["promoted"]
    model: str = Field(min_length=1, description="the registered model whose promotion starts this pipeline")
    alias: Optional[str] = Field(None, min_length=1, description="only when this alias moves (default: any)")
    enabled: bool = True

    def deployment_trigger(self) -> Any:
        from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

        from tasks.tracking.events import PROMOTED, model_resource

        match = {"prefect.resource.id": model_resource(self.model)}
        if self.alias:
            match["fuseflow.model.alias"] = self.alias
        return DeploymentEventTrigger(name=f"on promoted {self.model}", expect={PROMOTED}, match=match,
                                      enabled=self.enabled)


class FailedTrigger(StrictModel):
    """`- on: failed, pipeline: NAME`: run when a run of pipeline NAME fails (a fallback or a cleanup)."""

    on: Literal["failed"]
    pipeline: str = Field(min_length=1)
    enabled: bool = True

    def deployment_trigger(self) -> Any:
        from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

        from tasks.tracking.events import RUN_FAILED, pipeline_resource

        return DeploymentEventTrigger(name=f"on failed {self.pipeline}", expect={RUN_FAILED},
                                      match={"prefect.resource.id": pipeline_resource(self.pipeline)},
                                      enabled=self.enabled)


TriggerConfig = Annotated[Union[PromotedTrigger, FailedTrigger], Field(discriminator="on")]
