"""Log a trained tabular model as an MLflow model that predicts from raw feature rows.

The MLflow `pytorch` flavor stores a `torch.export` (pt2) program: loading it runs no pickled code.
It wraps the network with the fitted feature scaling and the output mapping (class id, or the
un-standardized regression target). Beside it, `extra_files/` holds the network's weights
(safetensors) and its spec (JSON), so fusion can rebuild the network and read its logits.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

SPEC_FILE = "fuseflow_model.json"
WEIGHTS_FILE = "weights.safetensors"
_EXPORT_LOCK = threading.Lock()  # serialises torch.export across threads (fusion members train concurrently)


def inference_module(core: Any, scaling: Any, task: str) -> Any:
    """raw features -> class ids (classification) or target values (regression)."""
    import torch
    import torch.nn as nn

    class TabularInference(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.core = core
            self.register_buffer("mean", torch.tensor(scaling.feature_mean, dtype=torch.float32))
            self.register_buffer("scale", torch.tensor(scaling.feature_scale, dtype=torch.float32))
            self.target_mean, self.target_scale = float(scaling.target_mean), float(scaling.target_scale)
            self.classify = task == "classification"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.core((x - self.mean) / self.scale)
            if self.classify:
                return out.argmax(-1)
            return out.squeeze(-1) * self.target_scale + self.target_mean

    return TabularInference().eval()


def model_spec(model_config: Any, splits: Any, scaling: Any) -> dict[str, Any]:
    return {"format": "fuseflow-tabular/1", "model": model_config.model_dump(mode="json"), "task": splits.task,
            "in_features": splits.num_features, "out_features": splits.num_outputs,
            "feature_names": splits.feature_names, "classes": splits.classes, "scaling": scaling.to_dict()}


def save_tabular_model(core: Any, model_config: Any, splits: Any, scaling: Any, path: Path) -> Path:
    """Save an MLflow model folder at `path` (pt2 program + weights + spec)."""
    import mlflow.pytorch
    import numpy as np
    import torch
    from safetensors.torch import save_file

    core = core.to("cpu").eval()
    extras = path.parent / f"{path.name}-extras"
    extras.mkdir(parents=True, exist_ok=True)
    spec_file = extras / SPEC_FILE
    spec_file.write_text(json.dumps(model_spec(model_config, splits, scaling), indent=2, default=str), encoding="utf-8")
    weights_file = extras / WEIGHTS_FILE
    save_file({k: v.detach().contiguous() for k, v in core.state_dict().items()}, str(weights_file))
    example = np.ascontiguousarray(_raw_rows(splits, scaling)[:5], dtype=np.float32)
    import warnings

    with _EXPORT_LOCK, warnings.catch_warnings():  # torch.export keeps module-global state: one thread at a time
        warnings.filterwarnings("ignore", message=".*Integer columns.*")  # class ids are integers by design
        mlflow.pytorch.save_model(
            inference_module(core, scaling, splits.task), str(path), serialization_format="pt2", input_example=example,
            extra_files=[str(spec_file), str(weights_file)],
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"])
    return path


def _raw_rows(splits: Any, scaling: Any) -> Any:
    """Test rows mapped back to raw feature units (the splits given here are already standardized)."""
    import numpy as np

    mean, scale = np.asarray(scaling.feature_mean), np.asarray(scaling.feature_scale)
    return splits.X["test"] * scale + mean


def load_tabular_network(model_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Rebuild the network of a saved model folder from its spec and safetensors weights (no pickle)."""
    from safetensors.torch import load_file

    from tasks.registry import MODELS

    extras = Path(model_dir) / "extra_files"
    spec = json.loads((extras / SPEC_FILE).read_text(encoding="utf-8"))
    config = MODELS.get(spec["model"]["type"]).model_validate(spec["model"])
    network = config.build(spec["in_features"], spec["out_features"])
    network.load_state_dict(load_file(str(extras / WEIGHTS_FILE)))
    return network.eval(), spec
