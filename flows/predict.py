"""`fuseflow predict`: load any logged fuseflow model and print its predictions for rows or texts."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError


def read_rows(path: Path) -> Any:
    """A CSV or JSON (records or JSON Lines) file as a DataFrame; a .txt file is one text per line."""
    import pandas as pd

    if not path.is_file():
        raise ConfigError.single(f"input file not found: {path}")
    if path.suffix.lower() == ".txt":
        lines = path.read_text(encoding="utf-8").split("\n")
        return pd.DataFrame({"text": [line for line in lines if line.strip()]})
    if path.suffix.lower() in (".json", ".jsonl"):
        return pd.read_json(path, lines=path.suffix.lower() == ".jsonl")
    return pd.read_csv(path)


def class_names(model_uri: str) -> list[Any] | None:
    """The class labels recorded beside a tabular model (its `extra_files/fuseflow_model.json`), if any."""
    import mlflow

    try:
        local = mlflow.artifacts.download_artifacts(f"{model_uri.rstrip('/')}/extra_files/fuseflow_model.json")
    except Exception:  # noqa: BLE001 - not a fuseflow tabular model
        return None
    return json.loads(Path(local).read_text(encoding="utf-8")).get("classes") or None


def predict_command(args: argparse.Namespace) -> int:
    import mlflow

    from tasks.tracking.logger import resolve_tracking_uri

    mlflow.set_tracking_uri(args.tracking_uri or resolve_tracking_uri())
    if not args.input and not args.text:
        raise ConfigError.single("give an INPUT file of rows or at least one --text")
    try:
        model = mlflow.pyfunc.load_model(args.model_uri)
    except Exception as exc:  # noqa: BLE001
        print(f"error: cannot load model {args.model_uri}: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    if args.text:
        import pandas as pd

        rows: Any = list(args.text)
        frame = pd.DataFrame({"text": rows})
    else:
        frame = read_rows(Path(args.input))
        rows = frame
    text_model = "transformers" in (getattr(model.metadata, "flavors", None) or {})
    if text_model and not args.text and "text" not in frame.columns:
        raise ConfigError.single(f"{args.input}: a text model needs a `text` column (or a .txt file, one text a line)")
    if args.text or "text" in frame.columns and (len(frame.columns) == 1 or text_model):
        texts = frame["text"].astype(str).tolist()
        result = model.predict(texts)
        for text, (_, row) in zip(texts, _as_frame(result).iterrows()):
            label, score = row.get("label"), row.get("score")
            print(f"{label}\t{score:.4f}\t{text}" if score is not None else f"{label}\t{text}")
        return 0
    import numpy as np

    preds = np.asarray(model.predict(frame.to_numpy(dtype=np.float32))).reshape(-1)
    names = class_names(args.model_uri)
    for value in preds:
        print(names[int(value)] if names and float(value).is_integer() and 0 <= int(value) < len(names) else value)
    return 0


def _as_frame(result: Any) -> Any:
    import pandas as pd

    return result if isinstance(result, pd.DataFrame) else pd.DataFrame(result)
