"""Log a trained tabular model as an MLflow pyfunc model that predicts from raw rows (a DataFrame as `pd.read_csv`
gives it: named columns, strings, missing cells).

Saved as an MLflow "model from code": a three-line loader script, the network's weights (safetensors) and its spec
(JSON: model config, fitted feature encoding, scaling, classes). Loading rebuilds the network from the spec and the
weights, so nothing is unpickled. The signature names the raw input columns with their types (optional where the
data had missing cells); the output is a DataFrame of `label` and `proba_<class>` (classification) or `prediction`
(regression). `extra_files/fuseflow_model.json` repeats the spec for `fuseflow predict` and fusion.
Loading needs the `tasks` package (fuseflow) importable.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

SPEC_FILE = "fuseflow_model.json"
WEIGHTS_FILE = "weights.safetensors"
LOADER_SCRIPT = """\
# Loads a fuseflow tabular model: the network is rebuilt from artifacts/fuseflow_model.json and its safetensors weights.
import mlflow
from tasks.export.tabular_pyfunc import tabular_python_model

mlflow.models.set_model(tabular_python_model())
"""


def model_spec(model_config: Any, splits: Any, scaling: Any) -> dict[str, Any]:
    layout = splits.layout
    return {"format": "fuseflow-tabular/1", "model": model_config.model_dump(mode="json"), "task": splits.task,
            "in_features": splits.num_features, "out_features": splits.num_outputs,
            "feature_names": splits.feature_names, "classes": splits.classes, "scaling": scaling.to_dict(),
            "features": splits.features, "embeddings": layout["embeddings"],
            "input_columns": [i["name"] for i in (splits.features or {}).get("inputs", [])]}


def signature(spec: dict[str, Any]) -> Any:
    """Raw input columns (optional where the training data had missing cells) -> label + class probabilities, or
    the regression prediction."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec(i["type"], i["name"], required=not i["nullable"])
                     for i in (spec.get("features") or {}).get("inputs", [])])
    if spec["task"] == "classification":
        classes = spec["classes"]
        label_type = "long" if all(isinstance(c, int) and not isinstance(c, bool) for c in classes) else "string"
        outputs = Schema([ColSpec(label_type, "label")] + [ColSpec("double", f"proba_{c}") for c in classes])
    else:
        outputs = Schema([ColSpec("double", "prediction")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def save_tabular_model(core: Any, model_config: Any, splits: Any, scaling: Any, path: Path) -> Path:
    """Save an MLflow model folder at `path` (loader script + weights + spec), with a raw-row input example."""
    import mlflow
    import mlflow.pyfunc
    import torch
    from safetensors.torch import save_file

    spec = model_spec(model_config, splits, scaling)
    with tempfile.TemporaryDirectory(prefix="fuseflow-tabular-") as tmp:
        spec_file, weights_file, script = Path(tmp) / SPEC_FILE, Path(tmp) / WEIGHTS_FILE, Path(tmp) / "tabular_model.py"
        spec_file.write_text(json.dumps(spec, indent=2, default=str), encoding="utf-8")
        core = core.to("cpu").eval()
        save_file({k: v.detach().contiguous() for k, v in core.state_dict().items()}, str(weights_file))
        script.write_text(LOADER_SCRIPT, encoding="utf-8")
        example = splits.raw["test"].head(5) if splits.raw else None
        mlflow.pyfunc.save_model(
            str(path), python_model=str(script), artifacts={"spec": str(spec_file), "weights": str(weights_file)},
            signature=signature(spec), input_example=example,
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
                              "safetensors", "pydantic>=2", "numpy", "pandas"])
    extras = path / "extra_files"
    extras.mkdir(exist_ok=True)
    (extras / SPEC_FILE).write_text(json.dumps(spec, indent=2, default=str), encoding="utf-8")
    return path


def _weights_path(model_dir: Path) -> Path:
    """A member folder keeps its weights in extra_files/; a logged model in artifacts/."""
    for folder in ("extra_files", "artifacts"):
        candidate = Path(model_dir) / folder / WEIGHTS_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no {WEIGHTS_FILE} in {model_dir}/extra_files or {model_dir}/artifacts")


def network_from_spec(spec: dict[str, Any], weights: Path) -> Any:
    """The network of a spec with its safetensors weights (no pickle), behind its embedding front end if any."""
    from safetensors.torch import load_file

    from tasks.registry import MODELS
    from tasks.train.embedded import build_network

    config = MODELS.get(spec["model"]["type"]).model_validate(spec["model"])
    network = build_network(config.build, spec["in_features"], spec["out_features"], spec.get("embeddings") or ())
    network.load_state_dict(load_file(str(weights)))
    return network.eval()


def load_tabular_network(model_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Rebuild the network of a saved model folder from its spec and safetensors weights (no pickle)."""
    spec = json.loads((Path(model_dir) / "extra_files" / SPEC_FILE).read_text(encoding="utf-8"))
    return network_from_spec(spec, _weights_path(model_dir)), spec
