"""Tabular members: a network with its fitted feature encoding and scaling, rebuilt from the spec JSON and safetensors weights
that fuseflow logs beside every tabular model (`model/extra_files/`), so no pickle is loaded."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tasks.export.torch_model import SPEC_FILE, WEIGHTS_FILE
from tasks.fusion.members.base import FusionMember


class TabularMember(FusionMember):
    """A tabular network with its fitted feature scaling, rebuilt from a fuseflow model folder."""

    kind = "tabular"

    def __init__(self, name: str, network: Any, spec: dict[str, Any]) -> None:
        from tasks.export.tabular_pyfunc import TabularInputs

        self.name, self.network, self.spec = name, network, spec
        self.classes = list(spec.get("classes") or [])
        self.inputs = TabularInputs(spec)

    @classmethod
    def from_dir(cls, name: str, model_dir: Path) -> "TabularMember":
        from tasks.export.torch_model import load_tabular_network

        network, spec = load_tabular_network(model_dir)
        if spec.get("task") != "classification":
            raise ValueError(f"member {name} is a {spec.get('task')} model; fusion combines classifiers")
        return cls(name, network, spec)

    def logits(self, inputs: Any) -> np.ndarray:
        import torch

        try:
            X = self.inputs.matrix(inputs)
        except ValueError as exc:
            raise ValueError(f"member {self.name}: {exc}") from None
        with torch.no_grad():
            self.network.eval()
            return self.network(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).double().numpy()

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in self.network.state_dict().items()}

    def with_state(self, name: str, state: dict[str, Any]) -> "TabularMember":
        """A copy of this member with other weights (a soup)."""
        import copy

        network = copy.deepcopy(self.network)
        network.load_state_dict(state)
        return TabularMember(name, network.eval(), self.spec)

    def save(self, folder: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        extras = folder / "extra_files"
        extras.mkdir(parents=True, exist_ok=True)
        (extras / SPEC_FILE).write_text(json.dumps(self.spec, indent=2, default=str), encoding="utf-8")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(extras / WEIGHTS_FILE))
        return {"name": self.name, "kind": self.kind}
