"""Small tables the tests build: a string category, a numeric column with missing cells, and a label they decide."""
from __future__ import annotations

import numpy as np
import pandas as pd


def shop_frame(n: int = 200, seed: int = 0, missing: float = 0.08) -> pd.DataFrame:
    """`region` (north/south/east), `spend` (a share `missing` of it NaN) and `label` (keep/churn)."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east"], n)
    spend = rng.normal(50, 20, n)
    label = np.where((region == "north") | (spend > 60), "keep", "churn")
    frame = pd.DataFrame({"region": region, "spend": spend, "label": label})
    frame.loc[rng.choice(n, int(round(n * missing)), replace=False), "spend"] = np.nan
    return frame
