"""A pipeline ready to run: its validated spec plus what resolving it against the project found (fusion members,
sweep trials). `flows.spec.resolve.resolve` builds it; the flow bodies take it. Nothing here is written back into
the spec's configs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from tasks.pipeline.spec import PipelineSpec


@dataclass(frozen=True)
class ResolvedPipeline:
    """`spec` with the members of a fusion (`fusion`, a `tasks.fusion.checks.ResolvedFusion`) or the trials of a
    sweep (`trials`, `tasks.sweep.trials.SweepTrial`s), each trial and inline member with its own validated spec."""

    spec: PipelineSpec
    fusion: Optional[Any] = None
    trials: list[Any] = field(default_factory=list)
    #: a sweep's trial values (dotted key -> value) -> that trial's validated spec, for trials a sampler asks for
    #: while the sweep runs
    resolve_trial: Optional[Callable[[dict[str, Any]], Any]] = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def modality(self) -> Optional[str]:
        """`tabular` or `text`: the data's (a fusion: its members' shared data)."""
        if self.spec.modality is not None:
            return self.spec.modality
        if self.fusion is not None:
            from pydantic import TypeAdapter

            from tasks.registry import DATA_SOURCES

            return TypeAdapter(DATA_SOURCES.union()).validate_python(self.fusion.data).modality
        return None

    def describe(self) -> str:
        """`training (tabular)`, `fusion (text)`, `sweep (tabular)`: what `fuseflow list` shows."""
        modality = self.modality
        return f"{self.kind} ({modality})" if modality else self.kind
