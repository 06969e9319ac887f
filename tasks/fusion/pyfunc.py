"""The fused model as ONE MLflow pyfunc model that carries its members and weights.

Saved as an MLflow "model from code": the model folder holds a three-line loader script, a `fusion/` artifact
folder (`fusion.json`: combination and member list; `members/<i>/`: each member's spec and safetensors
weights) and `extra_files/fuseflow_model.json` (format, classes and tabular feature names, which `fuseflow predict`
reads). Loading rebuilds every member without unpickling anything; `predict(rows)` returns `label` and
`proba_<class>` columns, like a tabular model.
Loading needs the `tasks` package (fuseflow) importable.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tasks.fusion.base import Combination
from tasks.fusion.members.base import FUSED_FORMAT, FusionMember
from tasks.fusion.members.load import member_from_dir
from tasks.export.torch_model import SPEC_FILE

LOADER_SCRIPT = """\
# Loads a fuseflow fused model: members and weights live in this model's `fusion` artifact folder.
import mlflow
from tasks.fusion.pyfunc import fused_python_model

mlflow.models.set_model(fused_python_model())
"""


class FusedPredictor:
    """Members + combination -> class probabilities / ids for raw inputs (also used in-process by the flow)."""

    def __init__(self, members: Sequence[FusionMember], combination: Combination, classes: Sequence[Any]) -> None:
        self.members, self.combination, self.classes = list(members), combination, list(classes)

    def probabilities(self, inputs: Any) -> np.ndarray:
        logits = np.stack([m.logits(inputs) for m in self.members])
        return self.combination.probabilities(logits)

    def predict(self, inputs: Any) -> np.ndarray:
        return self.probabilities(inputs).argmax(1)

    @classmethod
    def load(cls, folder: Path) -> "FusedPredictor":
        manifest = json.loads((Path(folder) / "fusion.json").read_text(encoding="utf-8"))
        members = [member_from_dir(entry["name"], Path(folder) / "members" / str(i))
                   for i, entry in enumerate(manifest["members"])]
        return cls(members, Combination.from_dict(manifest["combination"]), manifest["classes"])

    def save(self, folder: Path, method: dict[str, Any] | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        entries = [m.save(folder / "members" / str(i)) for i, m in enumerate(self.members)]
        manifest = {"format": FUSED_FORMAT, "members": entries, "combination": self.combination.to_dict(),
                    "classes": self.classes, "method": method}
        (folder / "fusion.json").write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        return folder


def fused_python_model() -> Any:
    """The PythonModel that serves a fused model (defined on call, so importing this module stays light)."""
    import mlflow.pyfunc

    class FusedModel(mlflow.pyfunc.PythonModel):
        def load_context(self, context):  # noqa: ANN001 - MLflow inspects these signatures: no type hints
            self.predictor = FusedPredictor.load(Path(context.artifacts["fusion"]))

        def predict(self, context, model_input, params=None):  # noqa: ANN001
            predictor = self.predictor
            inputs = _as_inputs(model_input, predictor.members)
            if predictor.members and predictor.members[0].kind == "text":  # like fuseflow's text models
                import pandas as pd

                probs = predictor.probabilities(inputs)
                return pd.DataFrame({"label": [str(predictor.classes[i]) for i in probs.argmax(1)],
                                     "score": probs.max(1)})
            return tabular_frame(predictor.probabilities(inputs), predictor.classes)

    return FusedModel()


def tabular_frame(probs: np.ndarray, classes: Sequence[Any]) -> Any:
    """`label` (the class values) and `proba_<class>` columns, as a tabular model returns them."""
    import pandas as pd

    frame = pd.DataFrame({"label": np.asarray(list(classes), dtype=object)[probs.argmax(1)]})
    for i, name in enumerate(classes):
        frame[f"proba_{name}"] = probs[:, i]
    return frame


def _as_inputs(model_input: Any, members: Sequence[FusionMember]) -> Any:
    """Raw rows (a DataFrame, or an array each member reads by position) for tabular members; strings for text."""
    import pandas as pd

    if members and members[0].kind == "text":
        if isinstance(model_input, pd.DataFrame):
            if model_input.shape[1] >= 2:  # text pairs
                return list(zip(model_input.iloc[:, 0].astype(str), model_input.iloc[:, 1].astype(str)))
            return model_input.iloc[:, 0].astype(str).tolist()
        return [str(t) for t in (model_input if isinstance(model_input, (list, tuple, np.ndarray, pd.Series)) else [model_input])]
    return model_input


def save_fused_model(predictor: FusedPredictor, path: Path, input_example: Any, method: dict[str, Any]) -> Path:
    """Write the MLflow pyfunc model folder at `path` (must not exist yet); `method` is the fusion method's config.
    Tabular: the first member's raw-column signature, and the same `label` + `proba_<class>` output."""
    import mlflow
    import mlflow.pyfunc
    import torch

    with tempfile.TemporaryDirectory(prefix="fuseflow-fused-") as tmp:
        folder = predictor.save(Path(tmp) / "fusion", method)
        script = Path(tmp) / "fused_model.py"
        script.write_text(LOADER_SCRIPT, encoding="utf-8")
        mlflow.pyfunc.save_model(
            str(path), python_model=str(script), artifacts={"fusion": str(folder)}, input_example=input_example,
            signature=_tabular_signature(predictor),
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
                              "safetensors", "pydantic>=2", "numpy", "pandas"] + _text_requirements(predictor))
    extras = path / "extra_files"
    extras.mkdir(exist_ok=True)
    spec = {"format": FUSED_FORMAT, "task": "classification", "classes": predictor.classes,
            "members": [m.name for m in predictor.members], "method": method}
    tabular = [getattr(m, "spec", {}) for m in predictor.members if m.kind == "tabular"]
    if tabular:  # `fuseflow predict` matches a file's columns by these names
        spec["input_columns"] = list(tabular[0].get("input_columns") or tabular[0].get("feature_names") or [])
        spec["feature_names"] = list(tabular[0].get("feature_names") or [])
        spec["features"] = tabular[0].get("features")
    (extras / SPEC_FILE).write_text(json.dumps(spec, indent=2, default=str), encoding="utf-8")
    return path


def _tabular_signature(predictor: FusedPredictor) -> Any:
    """The raw-column signature of the first tabular member (members share one data section), else None."""
    from tasks.export.torch_model import signature

    tabular = [m.spec for m in predictor.members if m.kind == "tabular" and (m.spec.get("features") or {}).get("inputs")]
    if not tabular:
        return None
    return signature({**tabular[0], "classes": predictor.classes, "task": "classification"})


def _text_requirements(predictor: FusedPredictor) -> list[str]:
    if not any(m.kind == "text" for m in predictor.members):
        return []
    import tokenizers
    import transformers

    return [f"transformers=={transformers.__version__}", f"tokenizers=={tokenizers.__version__}"]
