"""`loss: cross_entropy | mse`. A loss is registered with the tasks it fits; it builds `criterion(outputs, targets)`
for one task (logits and class ids, or predictions and float targets)."""
from __future__ import annotations

from typing import Any, Callable

from tasks.registry import LOSSES

Criterion = Callable[[Any, Any], Any]


@LOSSES.register("cross_entropy", tasks=("classification",))
def cross_entropy(task: str) -> Criterion:
    """Cross-entropy on logits."""
    import torch.nn.functional as F

    return F.cross_entropy


@LOSSES.register("mse", tasks=("classification", "regression"))
def mse(task: str) -> Criterion:
    """Mean squared error: on predictions (regression), or on softmax probabilities against one-hot classes."""
    import torch.nn.functional as F

    if task == "regression":
        return lambda out, y: F.mse_loss(out.squeeze(-1), y)
    return lambda out, y: F.mse_loss(out.softmax(-1), F.one_hot(y, out.shape[-1]).to(out.dtype))
