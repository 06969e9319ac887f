"""`method: weighted`: a linear combination of member logits with weights trained by autograd on validation.

The weights are a softmax over free parameters (non-negative, summing to 1), optionally one set per class,
optionally with a learned temperature; the validation cross-entropy is minimised with full-batch L-BFGS
(it converges in milliseconds on validation-sized data).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt

from tasks.fusion.base import Combination, OutputMethod
from tasks.registry import FUSION_METHODS


@FUSION_METHODS.register
class WeightedMethod(OutputMethod):
    """Softmax-parameterised weights over member logits, fitted on validation (full-batch L-BFGS)."""

    method: Literal["weighted"]
    per_class: bool = Field(False, description="one weight per member and class (members x classes)")
    temperature: bool = Field(False, description="also learn a temperature that divides the fused logits")
    steps: PositiveInt = Field(200, description="at most this many L-BFGS iterations on the validation cross-entropy")

    def fit(self, logits: np.ndarray, y: np.ndarray) -> Combination:
        import torch

        members, _, classes = logits.shape
        L = torch.as_tensor(logits, dtype=torch.float64)
        target = torch.as_tensor(y, dtype=torch.long)
        alpha = torch.zeros((members, classes) if self.per_class else (members,), dtype=torch.float64,
                            requires_grad=True)
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=self.temperature)
        params = [alpha] + ([log_t] if self.temperature else [])
        optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=self.steps, line_search_fn="strong_wolfe")

        def loss_fn() -> torch.Tensor:
            w = alpha.softmax(0)
            w = w[:, None, None] if w.ndim == 1 else w[:, None, :]
            return torch.nn.functional.cross_entropy((w * L).sum(0) / log_t.exp(), target)

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        first = loss_fn().item()
        optimizer.step(closure)
        with torch.no_grad():
            last = loss_fn().item()
        weights = alpha.detach().softmax(0).numpy()
        return Combination("logits", weights, float(log_t.detach().exp()),
                           {"val_loss_first": first, "val_loss_last": last, "optimizer": "lbfgs"})
