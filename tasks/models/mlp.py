"""`type: mlp`: a multi-layer perceptron whose input and output sizes come from the data."""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt

from tasks.registry import MODELS, StrictModel

ACTIVATIONS = {"relu": "ReLU", "gelu": "GELU", "tanh": "Tanh", "sigmoid": "Sigmoid",
               "leaky_relu": "LeakyReLU", "silu": "SiLU", "elu": "ELU"}


@MODELS.register
class MLPConfig(StrictModel):
    type: Literal["mlp"]
    modalities: ClassVar[frozenset[str]] = frozenset({"tabular"})
    hidden: list[PositiveInt] = Field([128, 64], min_length=1, description="sizes of the hidden layers")
    activation: Literal["relu", "gelu", "tanh", "sigmoid", "leaky_relu", "silu", "elu"] = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)

    def build(self, in_features: int, out_features: int) -> Any:
        import torch.nn as nn

        layers: list[nn.Module] = []
        width = in_features
        for size in self.hidden:
            layers += [nn.Linear(width, size), getattr(nn, ACTIVATIONS[self.activation])()]
            if self.dropout:
                layers.append(nn.Dropout(self.dropout))
            width = size
        layers.append(nn.Linear(width, out_features))
        return nn.Sequential(*layers)
