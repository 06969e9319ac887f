"""`sampler: grid`: every combination of the parameters' lists, first key varying slowest (the default when every
parameter is a list)."""
from __future__ import annotations

from typing import ClassVar, Literal

from tasks.registry import SAMPLERS
from tasks.sweep.samplers.base import SamplerBase


@SAMPLERS.register
class GridSampler(SamplerBase):
    name: Literal["grid"]
    planned: ClassVar[bool] = True
