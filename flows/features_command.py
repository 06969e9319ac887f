"""`fuseflow validate --show-features`: what each table pipeline's run will do to every column (type, missing cells,
encoding), computed exactly as the run does (same split, fitted on train), before any training."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from tasks.errors import ConfigError


def show_features(specs: Mapping[str, Any], base_dir: Path, names: Sequence[str]) -> int:
    """Print the feature table of the named (default: every) tabular training pipeline; 0, or 2 on a bad name."""
    from rich.console import Console

    from tasks.data.features.report import render_table
    from tasks.data.tabular import load_tabular
    from tasks.errors import did_you_mean

    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ConfigError.single(f"no pipeline '{unknown[0]}'{did_you_mean(unknown[0], specs)} "
                                 f"(pipelines: {', '.join(specs)})")
    console = Console(width=None if sys.stdout.isatty() else 140)
    shown = 0
    for name in names or list(specs):
        pipeline = specs[name].spec
        data = getattr(pipeline, "data", None)
        if data is None or data.modality != "tabular":
            if names:
                console.print(f"{name}: no feature table ({'a fusion' if data is None else 'a text pipeline'})")
            continue
        splits = load_tabular(data, pipeline.seed, base_dir, getattr(pipeline.train, "loss", None))
        console.print(render_table(name, splits.report["feature_table"], splits.report.get("rows_dropped")))
        console.print(f"  {len(splits.feature_names)} network inputs; rows: " +
                      ", ".join(f"{k} {v}" for k, v in splits.sizes().items()))
        shown += 1
    if not shown and not names:
        console.print("no table pipelines to show")
    return 0
