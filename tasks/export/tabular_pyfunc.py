"""Raw rows -> the network's input, and the pyfunc model that serves a tabular network.

`TabularInputs` applies a spec's fitted feature encoding and scaling (JSON) to a DataFrame of raw rows; fusion
members use it too. `TabularPredictor` adds the network and the output mapping (class values and probabilities,
or the regression target in its own units).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class TabularInputs:
    """A spec's fitted features and scaling: `matrix(rows)` gives the network's float32 input for raw rows."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from tasks.data.features.fitted import FittedFeatures

        self.features = FittedFeatures.from_dict(spec["features"]) if spec.get("features") else None
        scaling = spec.get("scaling") or {}
        n = int(spec["in_features"])
        self.mean = np.asarray(scaling.get("feature_mean") or [0.0] * n, dtype=np.float32)
        self.scale = np.asarray(scaling.get("feature_scale") or [1.0] * n, dtype=np.float32)
        self.names = list(spec.get("input_columns") or spec.get("feature_names") or [])

    def frame(self, rows: Any) -> Any:
        """`rows` as a DataFrame of the input columns: a DataFrame as is; a 2-D array (all-number tables) by position."""
        import pandas as pd

        if isinstance(rows, pd.DataFrame):
            return rows
        array = np.asarray(rows)
        if array.ndim == 1:
            array = array[None, :]
        if self.features is not None and not self.features.all_numeric():
            raise ValueError(f"this model takes named columns ({', '.join(self.names)}); pass a DataFrame")
        if array.ndim != 2 or array.shape[1] != len(self.names):
            raise ValueError(f"expected rows of {len(self.names)} values ({', '.join(self.names)}), got shape "
                             f"{array.shape}")
        return pd.DataFrame(array.astype(np.float64), columns=self.names)

    def matrix(self, rows: Any) -> np.ndarray:
        """Encoded, scaled float32 rows for the network."""
        if self.features is None:  # a model logged before typed features: rows are the network's raw numbers
            X = np.asarray(rows, dtype=np.float32)
        else:
            X = self.features.transform(self.frame(rows))
        if X.ndim != 2 or X.shape[1] != len(self.mean):
            raise ValueError(f"expected {len(self.mean)} encoded columns, got shape {X.shape}")
        return (X - self.mean) / self.scale


class TabularPredictor:
    """A tabular network with its inputs and output mapping."""

    def __init__(self, network: Any, spec: dict[str, Any]) -> None:
        self.network, self.spec, self.inputs = network, spec, TabularInputs(spec)
        self.task, self.classes = spec["task"], list(spec.get("classes") or [])
        scaling = spec.get("scaling") or {}
        self.target_mean = float(scaling.get("target_mean", 0.0))
        self.target_scale = float(scaling.get("target_scale", 1.0))

    def outputs(self, rows: Any) -> np.ndarray:
        """Class probabilities (rows x classes) or predictions in target units."""
        import torch

        from tasks.train.backends.torch_loop import predict_batches

        X = torch.from_numpy(np.ascontiguousarray(self.inputs.matrix(rows), dtype=np.float32))
        out = predict_batches(self.network, X, 4096)
        if self.task == "classification":
            return out.softmax(-1).double().numpy()
        return out.squeeze(-1).double().numpy() * self.target_scale + self.target_mean

    def predict_frame(self, rows: Any) -> Any:
        """`label` + `proba_<class>` per row (classification), or `prediction` (regression)."""
        import pandas as pd

        out = self.outputs(rows)
        if self.task != "classification":
            return pd.DataFrame({"prediction": out})
        labels = np.asarray(self.classes, dtype=object)[out.argmax(1)]
        frame = pd.DataFrame({"label": labels})
        for i, name in enumerate(self.classes):
            frame[f"proba_{name}"] = out[:, i]
        return frame

    @classmethod
    def load(cls, spec_file: Path, weights_file: Path) -> "TabularPredictor":
        from tasks.export.torch_model import network_from_spec

        spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
        return cls(network_from_spec(spec, Path(weights_file)), spec)


def tabular_python_model() -> Any:
    """The PythonModel that serves a tabular network (defined on call, so importing this module stays light)."""
    import mlflow.pyfunc

    class TabularModel(mlflow.pyfunc.PythonModel):
        def load_context(self, context):  # noqa: ANN001 - MLflow inspects these signatures: no type hints
            self.predictor = TabularPredictor.load(context.artifacts["spec"], context.artifacts["weights"])

        def predict(self, context, model_input, params=None):  # noqa: ANN001
            return self.predictor.predict_frame(model_input)

    return TabularModel()
