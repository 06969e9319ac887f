"""Tabular data: load a source's table, type its columns, drop the rows that cannot be used, split with a seed
(keeping groups together with `split.group_by`) and encode every split with features fitted on train only."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.data.sources.base import plain
from tasks.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from tasks.data.splits import TabularSplits


def load_tabular(config: Any, seed: int, base_dir: Path, loss: str | None = None) -> "TabularSplits":
    """Load the table of ``config`` and split it into train/validation/test with ``seed``."""
    import numpy as np

    from tasks.data.checks import check_split_rows, check_training_classes
    from tasks.data.features.fitted import FittedFeatures, plan_columns
    from tasks.data.features.spec import TableColumns
    from tasks.data.features.types.base import is_missing
    from tasks.data.splits import TabularSplits

    features, label, class_names = config.load_frame(base_dir)
    features = features.rename(columns=str)
    column = getattr(config, "label_column", "")  # a bundled dataset names no label column
    if not len(label):
        raise ConfigError.single(f"the table {config.describe()} has no rows: there is nothing to train on", ("data",))
    group = config.split.group_by
    groups = features[group] if group else None
    if group and not (isinstance(config, TableColumns) and group in (config.feature_columns() or [])):
        features = features.drop(columns=[group])
    plans, issues = plan_columns(features, config if isinstance(config, TableColumns) else None)
    if issues:
        raise ConfigError([ConfigIssue(message, ("data",) + path) for path, message in issues])

    keep = ~is_missing(label)
    dropped = {"label": int((~keep).sum())}
    if not keep.any():
        raise ConfigError.single(f"label column '{column}' has no values (all {len(label)} cells are missing); check "
                                 "that `label_column` names the column to predict", ("data", "label_column"))
    for plan in plans:
        if plan.config.wants_row_dropped():
            gone = is_missing(features[plan.name]) & keep
            dropped[plan.name] = int(gone.sum())
            keep &= ~gone
    table = features
    features, label = features[keep].reset_index(drop=True), label[keep].reset_index(drop=True)
    groups = groups[keep].reset_index(drop=True) if groups is not None else None

    fractions = {"validation": config.split.validation, "test": config.split.test}
    if groups is None:
        check_split_rows(len(label), fractions, dropped=dropped)
    else:
        check_split_rows(groups.astype(str).nunique(), fractions, unit="group", path=("data", "split", "group_by"),
                         subject=f"split.group_by '{group}'")
    task = resolve_task(config, label, loss)
    y, classes = _labels(label, task, class_names, column)
    seed = seed if config.split.seed is None else config.split.seed
    index = _split(len(y), y if task == "classification" and config.split.stratify else None, groups, config.split, seed)
    if config.max_samples:
        index = {k: v[: config.max_rows(k)] for k, v in index.items()}
    if task == "classification":
        check_training_classes(y[index["train"]], classes, lambda: y, capped=config.max_rows("train") is not None,
                               column=column)
    fitted = FittedFeatures.fit(plans, features.iloc[index["train"]], table)
    if not fitted.output_names:
        raise ConfigError.single(_no_features(plans, list(features.columns)), ("data", "features"))
    raw = {k: features.iloc[v].reset_index(drop=True) for k, v in index.items()}
    X = {k: fitted.transform(frame) for k, frame in raw.items()}
    report = {"rows": int(len(keep)), "rows_dropped": {k: v for k, v in dropped.items() if v},
              "feature_table": fitted.table(table), "group_by": group}
    return TabularSplits(name=config.describe(), task=task, feature_names=fitted.output_names,
                         X=X, y={k: y[v] for k, v in index.items()}, classes=classes, source=config.describe(),
                         raw=raw, features=fitted.to_dict(), report=report)


def _no_features(plans: list[Any], columns: list[str]) -> str:
    """Why no input is left for the network (every column dropped), and how to keep one."""
    if not columns:
        return "the table has no column besides the label (and `split.group_by`): add feature columns"
    why = "; ".join(f"'{p.name}' ({p.reason})" for p in plans[:5]) + ("; ..." if len(plans) > 5 else "")
    return (f"no feature is left: every column is dropped ({why}); declare the columns to keep, e.g. "
            f"`features: {{{plans[0].name}: numeric}}` (or category), or add feature columns")


def _labels(label: "pd.Series", task: str, class_names: Any, column: str = "") -> "tuple[np.ndarray, list[Any]]":
    """Class ids and the class values (classification), or float targets (regression)."""
    import numpy as np
    import pandas as pd

    if task != "classification":
        from tasks.data.features.types.numeric import numbers

        try:
            return numbers(label).astype(np.float32), []
        except ValueError as exc:
            raise ConfigError.single(f"a regression label must be numbers: {exc}", ("data", "label_column")) from None
    if class_names is not None and pd.api.types.is_integer_dtype(label):
        present = sorted(int(v) for v in label.unique())
        classes = [class_names[i] for i in present]
        y = np.searchsorted(np.asarray(present), label.to_numpy()).astype(np.int64)
    else:
        codes, uniques = pd.factorize(label, sort=True)
        classes, y = [plain(v) for v in uniques], codes.astype(np.int64)
    if len(classes) < 2:
        from tasks.data.checks import single_class_error

        raise single_class_error(column, classes[0], len(label))
    return y, classes


def _split(n: int, stratify_by: "np.ndarray | None", groups: "pd.Series | None", split: Any, seed: int) -> dict[str, "np.ndarray"]:
    """Row indices of train/validation/test: stratified by class where each has 3+ rows, or by whole groups."""
    import numpy as np
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    from tasks.data.checks import carve_sizes, stratifiable

    rows = np.arange(n)
    held_out = split.validation + split.test
    if groups is not None:  # enough groups: checked by the caller (check_split_rows)
        keys = groups.astype(str).to_numpy()
        train, rest = next(GroupShuffleSplit(1, test_size=held_out, random_state=seed).split(rows, groups=keys))
        val_i, test_i = next(GroupShuffleSplit(1, test_size=split.test / held_out, random_state=seed)
                             .split(rest, groups=keys[rest]))
        return {"train": rows[train], "validation": rest[val_i], "test": rest[test_i]}
    sizes = carve_sizes(n, {"validation": split.validation, "test": split.test})
    if stratify_by is not None and not stratifiable(stratify_by, n - sizes["train"], min_per_class=3):
        stratify_by = None  # too few samples of a class to stratify three ways
    train, rest, _, y_rest = train_test_split(rows, rows if stratify_by is None else stratify_by, test_size=held_out,
                                              random_state=seed, stratify=stratify_by)
    second = y_rest if stratify_by is not None and stratifiable(y_rest, sizes["test"]) else None
    validation, test = train_test_split(rest, test_size=split.test / held_out, random_state=seed, stratify=second)
    return {"train": train, "validation": validation, "test": test}


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
