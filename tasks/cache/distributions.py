"""Which installed distributions (and versions) a step's code imports: part of its cache key, so upgrading any
package the step uses (a custom model's third-party library included) recomputes it instead of a stale hit.

Mapping import names to distributions (`sklearn` -> scikit-learn) reads every installed distribution's metadata
(~0.3 s); the map is kept in the cache folder, keyed by the names of the installed `*.dist-info` folders (which
carry the versions), so it is rebuilt only when a package is installed, upgraded or removed.
"""
from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

from tasks.cache.fingerprint import digest

MAP_FILE = "distributions.json"
#: distributions never part of a key through imports: the project itself (its code is keyed by source)
NOT_VERSIONED = frozenset({"fuseflow"})


@lru_cache(maxsize=1)
def installed_marker() -> str:
    """Digest of every `*.dist-info`/`*.egg-info` folder name on sys.path: changes when any package changes."""
    names: list[str] = []
    for entry in sys.path:
        try:
            names += [n for n in os.listdir(entry or ".") if n.endswith((".dist-info", ".egg-info"))]
        except OSError:
            continue
    return digest("\n".join(sorted(names)))


@lru_cache(maxsize=4)
def _distribution_map(folder: Optional[str], marker: str) -> dict[str, dict[str, str]]:
    """Import name -> {distribution: version}, read from the map file of `folder` when its marker matches."""
    path = Path(folder) / MAP_FILE if folder else None
    if path is not None:
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("marker") == marker:
                return stored["map"]
        except (OSError, ValueError, KeyError):
            pass
    from importlib.metadata import distributions

    found: dict[str, dict[str, str]] = {}
    for dist in distributions():  # one pass over the metadata (as packages_distributions, with the versions)
        name = dist.metadata["Name"]
        if not name:
            continue
        for top in _top_level_names(dist):
            found.setdefault(top, {})[name] = dist.version
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"marker": marker, "map": found}), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache folder: the map is rebuilt next time
    return found


def _top_level_names(dist: object) -> set[str]:
    """Import names a distribution provides: its top_level.txt, else the first part of each installed file."""
    declared = (dist.read_text("top_level.txt") or "").split()  # type: ignore[attr-defined]
    if declared:
        return set(declared)
    names = set()
    for file in dist.files or ():  # type: ignore[attr-defined]
        top = file.parts[0] if len(file.parts) > 1 else file.name.removesuffix(".py")
        if top and not top.endswith((".dist-info", ".egg-info", ".pth")) and top not in ("..", "__pycache__") \
                and (len(file.parts) > 1 or file.name.endswith(".py")):
            names.add(top)
    return names


def distribution_versions(top_level_modules: Iterable[str], folder: Optional[Path] = None) -> dict[str, str]:
    """`distribution -> version` of every installed distribution providing one of `top_level_modules`."""
    mapping = _distribution_map(str(folder) if folder else None, installed_marker())
    versions: dict[str, str] = {}
    for top in top_level_modules:
        for dist, found in mapping.get(top, {}).items():
            if dist.lower() not in NOT_VERSIONED:
                versions[dist] = found
    return dict(sorted(versions.items()))
