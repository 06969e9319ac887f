"""Data step: load a table (scikit-learn, CSV/JSON/Parquet, Hugging Face Hub) and split it with a seed."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import Field, model_validator

from tasks.errors import ConfigError, did_you_mean
from tasks.registry import DATA_SOURCES, StrictModel

if TYPE_CHECKING:
    import pandas as pd

    from tasks.dataset import TabularSplits

SKLEARN_DATASETS = {"digits": "classification", "iris": "classification", "wine": "classification",
                    "breast_cancer": "classification", "diabetes": "regression"}


class SplitConfig(StrictModel):
    """Fractions held out for validation and test; stratified by label for classification."""

    validation: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    stratify: bool = True
    seed: Optional[int] = Field(None, description="seed of the split (default: the pipeline's seed); "
                                "fusion members share one split while their `seed` varies the initialisation")

    @model_validator(mode="after")
    def _leave_training_data(self) -> "SplitConfig":
        if self.validation + self.test >= 0.9:
            raise ValueError(f"validation + test must leave at least 10% for training (got {self.validation + self.test:g})")
        return self


class DataBase(StrictModel):
    """Keys shared by every data source."""

    split: SplitConfig = Field(default_factory=SplitConfig)
    task: Literal["auto", "classification", "regression"] = "auto"
    target_scaling: Literal["auto", "standard", "none"] = Field(
        "auto", description="regression targets are standardized on train by default (auto); predictions map back")
    max_samples: Optional[int] = Field(None, gt=0, description="keep at most this many rows per split (quick runs)")

    def preflight(self, base_dir: Path) -> list[tuple[tuple, str]]:
        """Checks that need the file system; returns (key path, message) pairs."""
        return []


@DATA_SOURCES.register
class SklearnData(DataBase):
    """A dataset bundled with scikit-learn (no network needed)."""

    source: Literal["sklearn"]
    name: Literal["digits", "iris", "wine", "breast_cancer", "diabetes"]

    def describe(self) -> str:
        return f"sklearn:{self.name}"

    def load_frame(self, base_dir: Path) -> "tuple[pd.DataFrame, pd.Series, list[Any] | None]":
        import sklearn.datasets as skd

        bunch = getattr(skd, f"load_{self.name}")(as_frame=True)
        names = [_plain(n) for n in bunch.target_names] if self.name != "diabetes" else None
        return bunch.data, bunch.target, names

    def inferred_task(self) -> str:
        return SKLEARN_DATASETS[self.name]


class FileData(DataBase):
    """A local table; relative paths are resolved against the folder of pipelines.yaml."""

    path: str
    label_column: str
    features: Optional[list[str]] = Field(None, min_length=1, description="feature columns (default: all but the label)")
    text_column: Optional[str] = None
    text_columns: Optional[list[str]] = Field(None, min_length=2, max_length=2)
    read_options: dict[str, Any] = Field(default_factory=dict, description="passed to pandas' reader")

    def describe(self) -> str:
        return f"{self.source}:{self.path}"

    def resolved_path(self, base_dir: Path) -> Path:
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else (base_dir / path)

    def read(self, path: Path, nrows: int | None = None) -> "pd.DataFrame":
        raise NotImplementedError

    def columns(self, base_dir: Path) -> list[str]:
        return [str(c) for c in self.read(self.resolved_path(base_dir), nrows=5).columns]

    def preflight(self, base_dir: Path) -> list[tuple[tuple, str]]:
        path = self.resolved_path(base_dir)
        if not path.is_file():
            return [(("path",), f"file not found: {path} (relative paths are resolved against {base_dir})")]
        try:
            columns = self.columns(base_dir)
        except Exception as exc:  # noqa: BLE001 - any reader error is a config problem of this file
            return [(("path",), f"cannot read {path} as {self.source}: {exc}")]
        issues = []
        wanted: list[tuple[tuple, str]] = [(("label_column",), self.label_column)]
        wanted += [(("features", i), c) for i, c in enumerate(self.features or [])]
        if self.text_column:
            wanted.append((("text_column",), self.text_column))
        wanted += [(("text_columns", i), c) for i, c in enumerate(self.text_columns or [])]
        for key, column in wanted:
            if column not in columns:
                issues.append((key, f"unknown column '{column}'{did_you_mean(column, columns)} (columns: {', '.join(columns)})"))
        return issues

    def load_frame(self, base_dir: Path) -> "tuple[pd.DataFrame, pd.Series, list[Any] | None]":
        frame = self.read(self.resolved_path(base_dir))
        label = frame[self.label_column]
        features = frame[self.features] if self.features else frame.drop(columns=[self.label_column])
        non_numeric = [c for c in features.columns if not _is_numeric(features[c])]
        if non_numeric:
            raise ConfigError.single(
                f"non-numeric feature columns {non_numeric}: list numeric columns in `features`, "
                "or use `text_column` for text", ("data", "features"))
        return features, label, None

    def inferred_task(self) -> str:
        return "auto"


def _is_numeric(series: "pd.Series") -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


@DATA_SOURCES.register
class CsvData(FileData):
    source: Literal["csv"]

    def read(self, path: Path, nrows: int | None = None) -> "pd.DataFrame":
        import pandas as pd

        return pd.read_csv(path, nrows=nrows, **self.read_options)


@DATA_SOURCES.register
class JsonData(FileData):
    """JSON records, or JSON Lines when the file ends in .jsonl."""

    source: Literal["json"]

    def read(self, path: Path, nrows: int | None = None) -> "pd.DataFrame":
        import pandas as pd

        lines = self.read_options.get("lines", path.suffix == ".jsonl")
        options = {k: v for k, v in self.read_options.items() if k != "lines"}
        frame = pd.read_json(path, lines=lines, **options)
        return frame.head(nrows) if nrows else frame


@DATA_SOURCES.register
class ParquetData(FileData):
    source: Literal["parquet"]

    def read(self, path: Path, nrows: int | None = None) -> "pd.DataFrame":
        import pandas as pd

        frame = pd.read_parquet(path, **self.read_options)
        return frame.head(nrows) if nrows else frame


@DATA_SOURCES.register
class HubData(DataBase):
    """A Hugging Face Hub dataset (or a local dataset folder/script that `datasets.load_dataset` accepts)."""

    source: Literal["hub"]
    name: str
    subset: Optional[str] = None
    revision: Optional[str] = None
    splits: Optional[dict[Literal["train", "validation", "test"], str]] = Field(
        None, description="use the dataset's own splits, e.g. {train: train, validation: validation}")
    label_column: str = "label"
    features: Optional[list[str]] = Field(None, min_length=1)
    text_column: Optional[str] = None
    text_columns: Optional[list[str]] = Field(None, min_length=2, max_length=2)
    data_files: Optional[Any] = Field(None, description="for file-based builders (csv/json/parquet) on the Hub or disk")

    def describe(self) -> str:
        return f"hub:{self.name}" + (f"/{self.subset}" if self.subset else "")

    def load_hf(self) -> Any:
        """The `datasets.DatasetDict`; network errors become one clear line."""
        import datasets

        try:
            return datasets.load_dataset(self.name, self.subset, revision=self.revision, data_files=self.data_files)
        except Exception as exc:  # noqa: BLE001 - surfaced as a run-time error with the dataset's name
            raise RuntimeError(f"cannot load Hugging Face dataset '{self.name}': {type(exc).__name__}: {exc}") from exc

    def load_frame(self, base_dir: Path) -> "tuple[pd.DataFrame, pd.Series, list[Any] | None]":
        import pandas as pd

        dataset = self.load_hf()
        wanted = list(self.splits.values()) if self.splits else list(dataset.keys())
        frame = pd.concat([dataset[s].to_pandas() for s in wanted], ignore_index=True)
        if self.label_column not in frame.columns:
            raise ConfigError.single(f"unknown column '{self.label_column}'{did_you_mean(self.label_column, frame.columns)}",
                                     ("data", "label_column"))
        label = frame[self.label_column]
        features = frame[self.features] if self.features else frame.drop(columns=[self.label_column])
        names = None
        feature_info = dataset[wanted[0]].features.get(self.label_column)
        if getattr(feature_info, "names", None):
            names = list(feature_info.names)
        return features, label, names

    def inferred_task(self) -> str:
        return "auto"


DataConfig = DATA_SOURCES.union()


def load_tabular(config: Any, seed: int, base_dir: Path, loss: str | None = None) -> "TabularSplits":
    """Load the table of ``config`` and split it into train/validation/test with ``seed``."""
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from tasks.dataset import TabularSplits

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
            classes, y = [_plain(v) for v in uniques], codes.astype(np.int64)
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
        Xs = {k: v[: config.max_samples] for k, v in Xs.items()}
        ys = {k: v[: config.max_samples] for k, v in ys.items()}
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


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so class labels serialise to JSON and MLflow tags."""
    return value.item() if hasattr(value, "item") else value
