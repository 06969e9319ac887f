"""`method: mean`: the uniform average of member probabilities (the baseline every method is compared with)."""
from __future__ import annotations

from typing import Literal

import numpy as np

from tasks.fusion.base import Combination, OutputMethod
from tasks.registry import FUSION_METHODS


@FUSION_METHODS.register
class MeanMethod(OutputMethod):
    """Average of member probabilities; nothing is fitted."""

    method: Literal["mean"]

    def fit(self, logits: np.ndarray, y: np.ndarray) -> Combination:
        members = logits.shape[0]
        return Combination("probs", np.full(members, 1.0 / members))
