"""The `fusion:` section: members (inline pipelines or MLflow model URIs), the method, and the protocol options."""
from __future__ import annotations

import re
from typing import Annotated, Any, Optional, Union

from pydantic import Discriminator, Field, Tag, field_validator

from tasks.registry import FUSION_METHODS, StrictModel

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]*$"  # usable in MLflow metric names
MODEL_URI = re.compile(r"^(runs:/[0-9A-Za-z]+/.+|models:/m-[0-9a-f]+|models:/[^/@]+(/[^/]+|@[^/]+))$")


class PipelineMember(StrictModel):
    """`pipeline: NAME` with optional `set:` overrides (dotted keys, as with `--set`): trained in this flow."""

    pipeline: str
    set: dict[str, Any] = Field(default_factory=dict, description="overrides applied to the member pipeline")
    name: Optional[str] = Field(None, pattern=NAME_PATTERN, description="label in the report (default: member<i>)")

    def describe(self) -> str:
        sets = ", ".join(f"{k}={v}" for k, v in self.set.items())
        return f"{self.pipeline}" + (f" ({sets})" if sets else "")


class ModelMember(StrictModel):
    """`model: URI` — a model logged earlier by fuseflow (runs:/<id>/model, models:/<name>/<v>, models:/<name>@<alias>)."""

    model: str
    name: Optional[str] = Field(None, pattern=NAME_PATTERN, description="label in the report (default: member<i>)")

    @field_validator("model")
    @classmethod
    def _model_uri(cls, value: str) -> str:
        if not MODEL_URI.match(value):
            raise ValueError(f"expected an MLflow model URI (runs:/<run_id>/model, models:/<name>/<version> or "
                             f"models:/<name>@<alias>), got {value!r}")
        return value

    def describe(self) -> str:
        return self.model


def _member_kind(value: Any) -> Optional[str]:
    if isinstance(value, dict):
        return "pipeline member" if "pipeline" in value else "model member" if "model" in value else None
    return "pipeline member" if isinstance(value, PipelineMember) else "model member" if isinstance(value, ModelMember) else None


Member = Annotated[
    Union[Annotated[PipelineMember, Tag("pipeline member")], Annotated[ModelMember, Tag("model member")]],
    Discriminator(_member_kind, custom_error_type="fusion_member",
                  custom_error_message="each member is `pipeline: NAME` (with optional `set:`) or `model: URI`"),
]


class BootstrapConfig(StrictModel):
    """Paired bootstrap of (fused - best member) on test: resamples, interval, seed."""

    samples: int = Field(1000, ge=100, le=100_000)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    seed: int = 0


class FusionConfig(StrictModel):
    """Combine several trained models: members fit on train, the fusion on validation, test touched once."""

    members: list[Member]
    method: FUSION_METHODS.field_type()
    require_gain: bool = Field(True, description="ship the best member when the fused model is not better on validation")
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)

    @field_validator("members")
    @classmethod
    def _two_or_more(cls, value: list[Any]) -> list[Any]:
        if len(value) < 2:
            raise ValueError(f"a fusion needs at least two members (got {len(value)}): each is `- pipeline: NAME` "
                             "(optional `set: {key: value}`) or `- model: URI`")
        names = [m.name for m in value if m.name]
        if len(set(names)) < len(names):
            raise ValueError(f"member names must be unique (got {names})")
        return value

    def member_names(self) -> list[str]:
        return [m.name or f"member{i}" for i, m in enumerate(self.members)]

