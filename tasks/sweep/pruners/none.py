"""`pruner: none` (the default): every trial trains to its last epoch."""
from __future__ import annotations

from typing import Any, Literal

from tasks.registry import PRUNERS
from tasks.sweep.pruners.base import PrunerBase


@PRUNERS.register
class NoPruner(PrunerBase):
    name: Literal["none"]

    @property
    def prunes(self) -> bool:
        return False

    def build(self, epochs: int) -> Any:
        from optuna.pruners import NopPruner

        return NopPruner()
