"""Tabular data: load a source's feature table and split it into train/validation/test with a seed."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.data.sources.base import plain
from tasks.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from tasks.data.splits import TabularSplits


def load_tabular(config: Any, seed: int, base_dir: Path, loss: str | None = None) -> "TabularSplits":
    """Load the table of ``config`` and split it into train/validation/test with ``seed``."""
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from tasks.data.splits import TabularSplits

    features, label, class_names = config.load_frame(base_dir)
    task = resolve_task(config, label, loss)
    X = features.to_numpy(dtype=np.float32)
    if task == "classification":
        if class_names is not None and pd.api.types.is_integer_dtype(label):
            present = sorted(int(v) for v in label.unique())
            classes = [class_names[i] for i in present]
            y = np.searchsorted(np.asarray(present), label.to_numpy()).astype(np.int64)
        else:
            codes, uniques = pd.factorize(label, sort=True)
            classes, y = [plain(v) for v in uniques], codes.astype(np.int64)
        if len(classes) < 2:
            raise ConfigError.single(f"label column has a single class ({classes[0]!r}); classification needs at least two",
                                     ("data", "label_column"))
    else:
        classes, y = [], label.to_numpy(dtype=np.float32)

    stratify = y if (task == "classification" and config.split.stratify) else None
    if stratify is not None and np.bincount(y).min() < 3:
        stratify = None  # too few samples of a class to stratify three ways
    held_out = config.split.validation + config.split.test
    seed = seed if config.split.seed is None else config.split.seed
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=held_out, random_state=seed, stratify=stratify)
    stratify_rest = y_rest if stratify is not None else None
    X_val, X_test, y_val, y_test = train_test_split(
        X_rest, y_rest, test_size=config.split.test / held_out, random_state=seed, stratify=stratify_rest)
    Xs = {"train": X_train, "validation": X_val, "test": X_test}
    ys = {"train": y_train, "validation": y_val, "test": y_test}
    if config.max_samples:
        Xs = {k: v[: config.max_rows(k)] for k, v in Xs.items()}
        ys = {k: v[: config.max_rows(k)] for k, v in ys.items()}
    return TabularSplits(name=config.describe(), task=task, feature_names=[str(c) for c in features.columns],
                         X=Xs, y=ys, classes=classes, source=config.describe())


def resolve_task(config: Any, label: "pd.Series", loss: str | None) -> str:
    """classification or regression: explicit `task`, else the dataset's kind, else the label's dtype and loss."""
    import pandas as pd

    if config.task != "auto":
        return config.task
    known = config.inferred_task()
    if known != "auto":
        return known
    if pd.api.types.is_float_dtype(label) and not (label.dropna() % 1 == 0).all():
        return "regression"
    if loss == "mse" and pd.api.types.is_numeric_dtype(label) and label.nunique() > 20:
        return "regression"
    return "classification"
