"""`method: soup_uniform`: the uniform average of every member's weights (Model Soups, Wortsman et al. 2022)."""
from __future__ import annotations

from typing import Any, Callable, Literal

import numpy as np

from tasks.fusion.base import Score, SoupResult, WeightMethod, average_states, check_same_shapes
from tasks.registry import FUSION_METHODS


@FUSION_METHODS.register
class SoupUniformMethod(WeightMethod):
    """Average all members' weights; members need one architecture (and one initialisation to help)."""

    method: Literal["soup_uniform"]

    def fit_soup(self, states: list[dict[str, Any]], names: list[str],
                 evaluate: Callable[[dict[str, Any]], Score]) -> SoupResult:
        check_same_shapes(states, names)
        soup = average_states(states)
        accuracy, neg_loss = evaluate(soup)
        trace = [{"members": list(names), "val_accuracy": accuracy, "val_log_loss": -neg_loss}]
        return SoupResult(soup, np.full(len(states), 1.0 / len(states)), trace)
