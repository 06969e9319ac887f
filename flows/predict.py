"""`fuseflow predict`: load any logged fuseflow model and print its predictions for rows or texts (the rows are read
and checked by flows/predict_input.py)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flows.predict_input import Rows, feature_matrix, model_frame, read_rows, texts
from tasks.errors import ConfigError


def model_spec(model_uri: str) -> dict[str, Any]:
    """The spec recorded beside a fuseflow model (`extra_files/fuseflow_model.json`: features, classes), or {}."""
    import mlflow

    base = model_uri.rstrip("/")
    try:
        if base.startswith("models:/m-"):  # a LoggedModel id: its files are at its artifact location
            base = mlflow.MlflowClient().get_logged_model(base.removeprefix("models:/")).artifact_location.rstrip("/")
        local = mlflow.artifacts.download_artifacts(f"{base}/extra_files/fuseflow_model.json")
        spec = json.loads(Path(local).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - not a fuseflow model, or one logged without a spec
        return {}
    return spec if isinstance(spec, dict) else {}


def predict_command(args: argparse.Namespace) -> int:
    """Load the model, read and check the input, print one prediction a line; bad input exits 2, naming the cell."""
    import mlflow

    from tasks.tracking.logger import resolve_tracking_uri

    mlflow.set_tracking_uri(args.tracking_uri or resolve_tracking_uri())
    if not args.input and not args.text:
        raise ConfigError.single("give an INPUT file of rows or at least one --text")
    if args.input and args.text:
        raise ConfigError.single("give an INPUT file or --text, not both")
    rows = read_rows(Path(args.input)) if args.input else Rows("--text", "txt", ["text"], [[t] for t in args.text], None)
    try:
        model = mlflow.pyfunc.load_model(args.model_uri)
    except Exception as exc:  # noqa: BLE001
        print(f"error: cannot load model {args.model_uri}: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    text_model = "transformers" in (getattr(model.metadata, "flavors", None) or {})
    columns = rows.columns or []
    if text_model or "text" in columns and len(columns) == 1 or args.text:
        return _predict_texts(model, texts(rows))
    spec = model_spec(args.model_uri)
    inputs = (spec.get("features") or {}).get("inputs")
    preds = _predict(model, model_frame(rows, inputs) if inputs else feature_matrix(rows, spec.get("feature_names")))
    if preds is None:
        return 1
    _print_predictions(preds, spec, getattr(args, "proba", False))
    return 0


def _print_predictions(preds: Any, spec: dict[str, Any], proba: bool) -> None:
    """One label (or regression value) a line; with `proba`, a tab-separated table of every output column."""
    import numpy as np
    import pandas as pd

    if isinstance(preds, pd.DataFrame):
        if proba:
            print("\t".join(map(str, preds.columns)))
            for row in preds.itertuples(index=False):
                print("\t".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row))
            return
        column = "label" if "label" in preds.columns else preds.columns[0]
        for value in preds[column]:
            print(value)
        return
    names = spec.get("classes") or None  # a model logged before typed features: class ids
    for value in np.asarray(preds).reshape(-1):
        print(names[int(value)] if names and float(value).is_integer() and 0 <= int(value) < len(names) else value)


def _predict(model: Any, inputs: Any) -> Any:
    """`model.predict(inputs)`, or None with one line on stderr when the model fails on them."""
    try:
        return model.predict(inputs)
    except Exception as exc:  # noqa: BLE001 - one line, no traceback
        print(f"error: the model failed on these rows: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return None


def _predict_texts(model: Any, items: list[str]) -> int:
    result = _predict(model, items)
    if result is None:
        return 1
    for text, (_, row) in zip(items, _as_frame(result).iterrows()):
        label, score = row.get("label"), row.get("score")
        print(f"{label}\t{score:.4f}\t{text}" if score is not None else f"{label}\t{text}")
    return 0


def _as_frame(result: Any) -> Any:
    import pandas as pd

    return result if isinstance(result, pd.DataFrame) else pd.DataFrame(result)
