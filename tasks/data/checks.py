"""Data-level checks of a training pipeline, made while its data is loaded and split, so that they run before the
MLflow run opens (flows/bodies/data.py): enough rows (or groups) for three splits that each hold one or more,
two classes or more in the training split, stratification only where scikit-learn can stratify. Every problem is a
`ConfigError` under `data` that says what is wrong and what to change; the flow locates it in pipelines.yaml."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from tasks.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

#: the most rows searched for the smallest table that splits (fractions of at least 1% need far fewer)
_SEARCH_LIMIT = 100_000


def carve_sizes(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Rows per part when `n` rows are carved into `train` and the held-out parts of `fractions` (each a fraction of
    all rows), as the seeded splits do it: scikit-learn's `train_test_split` rounds the held-out part up, first all
    held-out rows from train, then the second part from the held-out rows (`tabular._split`, `text.carve`)."""
    roles = list(fractions)
    held_out = sum(fractions.values())
    rest = math.ceil(held_out * n) if n else 0
    sizes = {"train": n - rest}
    if len(roles) == 1:
        sizes[roles[0]] = rest
    else:
        second = math.ceil(fractions[roles[1]] / held_out * rest) if rest else 0
        sizes[roles[0]], sizes[roles[1]] = rest - second, second
    return sizes


def smallest_splittable(fractions: dict[str, float]) -> Optional[int]:
    """The fewest rows that leave every part of `carve_sizes` one row or more (None beyond the search limit)."""
    return next((n for n in range(len(fractions) + 1, _SEARCH_LIMIT)
                 if min(carve_sizes(n, fractions).values()) >= 1), None)


def check_split_rows(n: int, fractions: dict[str, float], unit: str = "row", dropped: Optional[dict[str, int]] = None,
                     path: Sequence[str | int] = ("data",), subject: str = "the data") -> dict[str, int]:
    """The sizes of the split of `n` rows (or groups, `unit`), or a config error naming the empty part(s), the
    rows needed and the fix; `dropped` (why -> rows) says which rows were left out before the split."""
    sizes = carve_sizes(n, fractions)
    empty = [role for role, size in sizes.items() if size < 1]
    if not empty:
        return sizes
    shares = " and ".join(f"{role} {fraction:g}" for role, fraction in fractions.items())
    need = smallest_splittable(fractions)
    gone = sum((dropped or {}).values())
    why = ""
    if gone:
        reasons = ", ".join(f"{count} with a missing {'label' if key == 'label' else repr(key)}"
                            for key, count in (dropped or {}).items() if count)
        why = f" ({gone} dropped before the split: {reasons})"
    usable = "usable " if gone else ""
    fix = f"add {unit}s (at least {need} are needed)" if need else f"add {unit}s"
    held = " and ".join(f"`split.{role}`" for role in fractions)
    fix += f", or lower {held}" if "train" in empty else f", or raise {held}"
    raise ConfigError.single(
        f"{subject} has {n} {usable}{unit}{'' if n == 1 else 's'}{why}: split fractions {shares} leave no {unit}s "
        f"for {', '.join(empty)}; {fix}", path)


def stratifiable(labels: "np.ndarray", held_out: int, min_per_class: int = 2) -> bool:
    """Whether scikit-learn can stratify `labels` with `held_out` rows held out: every class with `min_per_class` rows
    or more (2 is scikit-learn's own minimum), and as many rows on each side as there are classes."""
    import numpy as np

    counts = np.unique(labels, return_counts=True)[1]
    if not len(counts):
        return False
    return bool(counts.min() >= min_per_class and held_out >= len(counts) and len(labels) - held_out >= len(counts))


def check_training_classes(train_labels: Sequence[int], classes: Sequence[Any], all_labels: Callable[[], Sequence[int]],
                           capped: bool = False, path: Sequence[str | int] = ("data", "label_column"),
                           column: str = "") -> None:
    """A classifier needs two classes or more among the training rows (class ids): else a config error that names the
    class the training split holds, how many rows each class has in all (`all_labels()`: the class ids of every
    split, read only then), and what to change; `capped`: the training split was cut by `max_samples`."""
    import numpy as np

    present = np.unique(np.asarray(train_labels))
    if len(present) >= 2:
        return
    only = repr(classes[int(present[0])]) if len(present) else "none"
    totals = np.bincount(np.asarray(all_labels(), dtype=np.int64), minlength=len(classes))
    counts = {classes[i]: int(n) for i, n in enumerate(totals) if n}
    held = ", ".join(f"{value!r}: {count}" for value, count in counts.items())
    fix = ("add rows of the other classes (3 or more of each lets the split stratify by class)"
           + (", or raise `max_samples` for train" if capped else ""))
    name = f"'{column}' " if column else ""
    raise ConfigError.single(f"label column {name}has {len(counts)} classes ({held}), but the training split holds "
                             f"only {only} after the split; a classifier needs two or more to learn: {fix}", path)


def single_class_error(column: str, value: Any, rows: int,
                       path: Sequence[str | int] = ("data", "label_column")) -> ConfigError:
    """The label column holds one class in all its rows: nothing to tell apart."""
    name = f"'{column}' " if column else ""
    return ConfigError.single(f"label column {name}has a single class ({value!r}) in all {rows} labelled rows; "
                              "classification needs at least two: add rows of another class, or check that "
                              "`label_column` names the column to predict", path)
