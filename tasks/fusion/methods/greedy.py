"""`method: greedy`: Caruana ensemble selection with replacement on validation (as in AutoGluon).

Each round adds the member (repeats allowed) whose addition gives the best validation score to the running
average of probabilities; a member's weight is how often it was picked divided by the number of rounds.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt

from tasks.fusion.base import Combination, OutputMethod, nll, softmax
from tasks.registry import FUSION_METHODS


@FUSION_METHODS.register
class GreedyMethod(OutputMethod):
    """Forward selection with replacement; weights = selection counts / rounds."""

    method: Literal["greedy"]
    rounds: PositiveInt = Field(25, description="members picked (with replacement)")
    metric: Literal["log_loss", "accuracy"] = Field("log_loss", description="validation score each pick optimises")

    def _loss(self, probs: np.ndarray, y: np.ndarray) -> float:
        if self.metric == "accuracy":  # ties broken by log loss, so picks stay informative
            return -float((probs.argmax(1) == y).mean()) + 1e-6 * float(nll(probs, y).mean())
        return float(nll(probs, y).mean())

    def fit(self, logits: np.ndarray, y: np.ndarray) -> Combination:
        probs = softmax(logits)
        members = probs.shape[0]
        counts = np.zeros(members, dtype=np.int64)
        total = np.zeros_like(probs[0])
        trace = []
        for k in range(1, self.rounds + 1):
            losses = [self._loss((total + probs[m]) / k, y) for m in range(members)]
            pick = int(np.argmin(losses))  # ties -> the lower index
            counts[pick] += 1
            total += probs[pick]
            trace.append({"round": k, "pick": pick, "val_loss": losses[pick]})
        return Combination("probs", counts / counts.sum(), details={"counts": counts.tolist(), "trace": trace})
