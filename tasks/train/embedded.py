"""Category columns encoded as embeddings: the network's input holds their codes, and an `EmbeddedInputs` front end
looks each code up in a learned table before the model's own layers (any tabular model type gets it)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Sequence


def build_network(build: Callable[[int, int], Any], in_features: int, out_features: int,
                  embeddings: Sequence[dict[str, int]] = ()) -> Any:
    """`build(in, out)` as is, or behind an `EmbeddedInputs` front end when some input columns are category codes."""
    if not embeddings:
        return build(in_features, out_features)
    width = in_features - len(embeddings) + sum(int(e["dim"]) for e in embeddings)
    return embedded_inputs_class()(build(width, out_features), in_features, embeddings)


@lru_cache(maxsize=1)
def embedded_inputs_class() -> type:
    """The module class, defined on first use (importing this module does not import torch)."""
    import torch
    import torch.nn as nn

    class EmbeddedInputs(nn.Module):
        """Dense columns pass through; each code column becomes its embedding vector; the concatenation feeds
        `core`."""

        def __init__(self, core: Any, in_features: int, embeddings: Sequence[dict[str, int]]) -> None:
            super().__init__()
            codes = [int(e["column"]) for e in embeddings]
            self.register_buffer("code_columns", torch.tensor(codes, dtype=torch.long), persistent=False)
            self.register_buffer("dense_columns", torch.tensor([i for i in range(in_features) if i not in codes],
                                                               dtype=torch.long), persistent=False)
            self.cardinalities = [int(e["cardinality"]) for e in embeddings]
            self.embeddings = nn.ModuleList(nn.Embedding(int(e["cardinality"]), int(e["dim"])) for e in embeddings)
            self.core = core

        def forward(self, x: Any) -> Any:
            codes = x.index_select(1, self.code_columns).long()
            looked_up = [table(codes[:, i].clamp(0, n - 1))
                         for i, (table, n) in enumerate(zip(self.embeddings, self.cardinalities))]
            return self.core(torch.cat([x.index_select(1, self.dense_columns)] + looked_up, dim=1))

    return EmbeddedInputs
