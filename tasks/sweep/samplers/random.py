"""`sampler: random`: `trials` independent draws (a list is a uniform choice), from a generator seeded with
`sweep.seed` (default: the pipeline's seed), so the same YAML gives the same trials."""
from __future__ import annotations

from typing import ClassVar, Literal

from tasks.registry import SAMPLERS
from tasks.sweep.samplers.base import SamplerBase


@SAMPLERS.register
class RandomSampler(SamplerBase):
    name: Literal["random"]
    planned: ClassVar[bool] = True
