"""Text data: load a labelled text dataset through `datasets` (Hub, or csv/json/parquet files), map labels, split.

Every step is a `datasets` transform of cached Arrow files, so a rerun with the same file and options reuses them
(and the `tokenize` step can reuse its own cache, keyed on these fingerprints).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tasks.data.checks import check_split_rows, check_training_classes, single_class_error
from tasks.data.splits import SPLITS
from tasks.errors import ConfigError, did_you_mean

LABEL = "label"  #: the class-id column of every loaded split
RAW_LABEL = "__fuseflow_raw_label"  # the source's label column while it is encoded


@dataclass
class TextSplits:
    """Train/validation/test `datasets.Dataset`s with the text column(s) and an integer `label` column."""

    name: str
    text_columns: list[str]
    datasets: dict[str, Any]
    classes: list[str]  # index = class id; the model's id2label
    source: str = ""
    digest: str = ""
    task: str = "classification"
    split_digests: dict[str, str] = field(default_factory=dict)  # split -> content digest (texts and labels)
    tokenize_cache: dict[str, str] = field(default_factory=dict)  # split -> "reused" | "computed"

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.classes))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.classes)}

    def sizes(self) -> dict[str, int]:
        return {split: len(self.datasets[split]) for split in SPLITS}

    def labels(self, split: str) -> Any:
        import numpy as np

        return np.asarray(self.datasets[split][LABEL], dtype=np.int64)


def text_columns_of(config: Any) -> list[str]:
    """`[text_column]` or the pair `text_columns`; a config error when the data has neither."""
    columns = config.text_columns_list()
    if not columns:
        raise ConfigError.single("a text pipeline needs `text_column` (or `text_columns: [a, b]` for pairs)", ("data",))
    return columns


def check_columns(raw: Any, wanted: list[tuple[tuple, str]]) -> None:
    """Every named column exists in every split, or one config error per missing column."""
    first = next(iter(raw.values()))
    columns = list(first.column_names)
    issues = [(path, column) for path, column in wanted if column not in columns]
    if issues:
        from tasks.errors import ConfigIssue

        raise ConfigError([ConfigIssue(f"unknown column '{c}'{did_you_mean(c, columns)} (columns: {', '.join(columns)})",
                                       ("data",) + path) for path, c in issues])


def _labelled(value: Any) -> bool:
    """False for a missing label: None, NaN (a JSON `NaN`, a float column's empty cell) or -1 (the Hub's mark of an
    unlabelled test split)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return not (isinstance(value, int) and value < 0)


def _drop_unlabelled(batch: dict[str, list], label_column: str) -> list[bool]:
    """Rows with a missing label (`_labelled`) are dropped."""
    return [_labelled(v) for v in batch[label_column]]


def _encode(batch: dict[str, list], ids: dict[str, int], label_column: str, text_columns: list[str]) -> dict[str, list]:
    """Label values -> class ids (keys are `str(value)`), texts -> str (missing -> empty)."""
    out = {c: ["" if t is None else str(t) for t in batch[c]] for c in text_columns}
    out[LABEL] = [ids[str(v)] for v in batch[label_column]]
    return out


def class_names(raw: Any, label_column: str) -> tuple[list[str], bool]:
    """Class names in id order, and whether the labels already are ids of a `ClassLabel` feature."""
    feature = next(iter(raw.values())).features.get(label_column)
    if getattr(feature, "names", None):
        return [str(n) for n in feature.names], True
    values: set[Any] = set()
    for split in raw.values():
        try:
            found = split.unique(label_column)
        except NotImplementedError:  # Arrow has no `unique` for a `Json` column (JSON labels of mixed types)
            found = split[label_column]
        values.update(v for v in found if _labelled(v))
    try:
        ordered = sorted(values)
    except TypeError:  # mixed types: order by their text
        ordered = sorted(values, key=str)
    return [str(v) for v in ordered], False


def split_roles(config: Any, raw: Any) -> dict[str, str]:
    """Which split of the source plays train/validation/test: the `splits:` mapping, else same-named splits."""
    mapping = getattr(config, "splits", None)
    if mapping:
        missing = [name for name in mapping.values() if name not in raw]
        if missing:
            raise ConfigError.single(f"unknown split '{missing[0]}'{did_you_mean(missing[0], list(raw))} "
                                     f"(splits: {', '.join(raw)})", ("data", "splits"))
        return dict(mapping)
    if "train" not in raw:
        raise ConfigError.single(f"the dataset has no `train` split (splits: {', '.join(raw)}); "
                                 "name the splits with `splits: {train: ..., validation: ..., test: ...}`", ("data",))
    return {role: role for role in SPLITS if role in raw}


def carve(dataset: Any, fractions: dict[str, float], seed: int, stratify: bool) -> dict[str, Any]:
    """Seeded (stratified) split of `dataset` into `train` plus the roles in `fractions` (each a fraction of all)."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from tasks.data.checks import carve_sizes, stratifiable

    labels = np.asarray(dataset[LABEL])
    index = np.arange(len(labels))
    sizes = carve_sizes(len(labels), fractions)
    strat = labels if stratify and stratifiable(labels, len(labels) - sizes["train"], min_per_class=3) else None
    roles = list(fractions)
    held_out = sum(fractions.values())
    train_idx, rest_idx = train_test_split(index, test_size=held_out, random_state=seed, stratify=strat)
    out = {"train": train_idx}
    if len(roles) == 1:
        out[roles[0]] = rest_idx
    else:
        rest_strat = labels[rest_idx] if strat is not None and stratifiable(labels[rest_idx], sizes[roles[1]]) else None
        first, second = train_test_split(rest_idx, test_size=fractions[roles[1]] / held_out, random_state=seed,
                                         stratify=rest_strat)
        out[roles[0]], out[roles[1]] = first, second
    return {role: dataset.select(np.sort(idx)) for role, idx in out.items()}


def split_digest(dataset: Any, text_columns: list[str]) -> str:
    """SHA-256 of one split's texts and labels, in order (its content's identity, not its path or file date)."""
    h = hashlib.sha256()
    for column in text_columns + [LABEL]:
        h.update("\x1f".join(map(str, dataset[column])).encode("utf-8", "surrogatepass"))
        h.update(b"\x1e")
    return h.hexdigest()[:16]


def load_text(config: Any, seed: int, base_dir: Path) -> TextSplits:
    """Load, encode labels (sorted order, or the dataset's ClassLabel names), and split into train/validation/test."""
    columns = text_columns_of(config)
    raw = config.load_text_datasets(base_dir)
    wanted = [(("label_column",), config.label_column)]
    wanted += [(("text_column",), c) for c in columns] if not getattr(config, "text_columns", None) else \
        [(("text_columns", i), c) for i, c in enumerate(columns)]
    check_columns(raw, wanted)
    names, already_ids = class_names(raw, config.label_column)
    roles = split_roles(config, raw)
    keep = columns + [config.label_column]
    ids = {name: i for i, name in enumerate(names)} if not already_ids else {str(i): i for i in range(len(names))}
    prepared: dict[str, Any] = {}
    for role, split_name in roles.items():
        ds = raw[split_name].select_columns(keep).rename_column(config.label_column, RAW_LABEL)
        ds = ds.filter(_drop_unlabelled, batched=True, fn_kwargs={"label_column": RAW_LABEL},
                       desc=f"dropping unlabelled rows ({split_name})")
        if len(ds) == 0:
            continue  # e.g. a Hub test split without labels: carved from train instead
        ds = ds.map(_encode, batched=True, fn_kwargs={"ids": ids, "label_column": RAW_LABEL, "text_columns": columns},
                    remove_columns=[RAW_LABEL], desc=f"encoding labels ({split_name})")
        prepared[role] = ds
    if "train" not in prepared:
        raise ConfigError.single(f"label column '{config.label_column}' has no values in the training split (every "
                                 "row misses its label); check that `label_column` names the column to predict",
                                 ("data", "label_column"))
    present = sorted(set(prepared["train"].unique(LABEL)))
    if len(present) < 2:
        raise single_class_error(config.label_column, names[present[0]] if present else "none", len(prepared["train"]))
    missing = {role: getattr(config.split, role) for role in ("validation", "test") if role not in prepared}
    if missing:
        check_split_rows(len(prepared["train"]), missing)
        split_seed = seed if getattr(config.split, "seed", None) is None else config.split.seed
        prepared.update(carve(prepared.pop("train"), missing, split_seed, config.split.stratify))
    if config.max_samples:
        prepared = {role: _first(ds, config.max_rows(role), seed, role in roles) for role, ds in prepared.items()}
    check_training_classes(prepared["train"][LABEL], names, lambda: [i for r in SPLITS for i in prepared[r][LABEL]],
                           capped=config.max_rows("train") is not None, column=config.label_column)
    digests = {split: split_digest(prepared[split], columns) for split in SPLITS}
    digest = hashlib.sha256(repr((digests, names)).encode()).hexdigest()[:16]
    return TextSplits(name=config.describe(), text_columns=columns, datasets={s: prepared[s] for s in SPLITS},
                      classes=names, source=config.describe(), digest=digest, split_digests=digests)


def _first(ds: Any, n: Optional[int], seed: int, shuffle: bool) -> Any:
    """At most `n` rows (all without a cap); a split of the source is shuffled first (our own splits already are
    random)."""
    if n is None or len(ds) <= n:
        return ds
    return (ds.shuffle(seed=seed) if shuffle else ds).select(range(n))


def describe_labels(splits: TextSplits) -> dict[str, Any]:
    """The label mapping and class counts per split, for the run's `label_map.json`."""
    import numpy as np

    counts = {split: {splits.classes[i]: int(n) for i, n in enumerate(np.bincount(splits.labels(split),
                                                                               minlength=len(splits.classes)))}
              for split in SPLITS}
    return {"id2label": {str(k): v for k, v in splits.id2label.items()}, "label2id": splits.label2id,
            "counts": counts, "text_columns": splits.text_columns}
