"""`method: soup_greedy`: greedy Model Soup — members sorted by validation score, each added to the average
only if the averaged weights score better on validation (Wortsman et al. 2022)."""
from __future__ import annotations

from typing import Any, Callable, Literal

import numpy as np

from tasks.fusion.base import Score, SoupResult, WeightMethod, average_states, check_same_shapes
from tasks.registry import FUSION_METHODS


@FUSION_METHODS.register
class SoupGreedyMethod(WeightMethod):
    """Start from the best member; keep each next member's weights only when validation improves."""

    method: Literal["soup_greedy"]

    def fit_soup(self, states: list[dict[str, Any]], names: list[str],
                 evaluate: Callable[[dict[str, Any]], Score]) -> SoupResult:
        check_same_shapes(states, names)
        scores = [evaluate(s) for s in states]
        order = sorted(range(len(states)), key=lambda i: scores[i], reverse=True)
        chosen = [order[0]]
        best = scores[order[0]]
        trace = [{"add": names[order[0]], "kept": True, "val_accuracy": best[0], "val_log_loss": -best[1]}]
        for i in order[1:]:
            candidate = evaluate(average_states([states[j] for j in chosen + [i]]))
            kept = candidate > best
            if kept:
                chosen.append(i)
                best = candidate
            trace.append({"add": names[i], "kept": kept, "val_accuracy": candidate[0], "val_log_loss": -candidate[1]})
        weights = np.zeros(len(states))
        weights[chosen] = 1.0 / len(chosen)
        return SoupResult(average_states([states[j] for j in chosen]), weights, trace)
