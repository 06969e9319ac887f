"""The step cache folder as a whole: what it holds (`info`), a size cap that evicts the least recently used results
(`prune`), and `clear`. Used by `fuseflow cache info|prune|clear` and after every run (the cap,
`FUSEFLOW_CACHE_MAX_GB`, default 20). A result whose lock is held (a run computing or reading it) is never evicted."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tasks.cache import index as cache_index

MAX_GB_ENV = "FUSEFLOW_CACHE_MAX_GB"
DEFAULT_MAX_GB = 20.0


@dataclass(frozen=True)
class Entry:
    """One stored step result: its key, size on disk, when it was computed and last used, and by which step."""

    key: str
    size: int
    computed: float
    used: float
    scope: str


def entries(folder: Path) -> list[Entry]:
    """Every stored result, least recently used first."""
    results = folder / "results"
    if not results.is_dir():
        return []
    known = cache_index.key_entries(folder)
    found = []
    for path in results.iterdir():
        if not path.is_file():
            continue
        stat = path.stat()
        meta = known.get(path.name, {})
        computed = float(meta.get("time", stat.st_mtime))
        found.append(Entry(path.name, stat.st_size + _size(folder / "keys" / path.name), computed,
                           float(meta.get("used", computed)), str(meta.get("scope", "?"))))
    return sorted(found, key=lambda e: e.used)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def max_bytes(configured: Optional[float] = None) -> int:
    """The cap in bytes: `configured` GB, else FUSEFLOW_CACHE_MAX_GB, else the default."""
    value = configured if configured is not None else float(os.environ.get(MAX_GB_ENV) or DEFAULT_MAX_GB)
    if value < 0:
        raise ValueError(f"the cache size cap must be >= 0 GB, got {value:g}")
    return int(value * 1024**3)


def _locked(folder: Path, key: str) -> bool:
    return (folder / "locks" / f"{key}.lock").exists()


def prune(folder: Path, limit: int) -> list[Entry]:
    """Evict least recently used results until the folder's results fit in `limit` bytes; the evicted entries."""
    found = entries(folder)
    total = sum(e.size for e in found)
    evicted: list[Entry] = []
    for entry in found:
        if total <= limit:
            break
        if _locked(folder, entry.key):
            continue
        for sub in ("results", "keys"):
            (folder / sub / entry.key).unlink(missing_ok=True)
        total -= entry.size
        evicted.append(entry)
    if evicted:
        cache_index.forget(folder, [e.key for e in evicted])
    return evicted


def clear(folder: Path) -> int:
    """Remove the whole cache folder (always safe: the next run recomputes); the bytes freed."""
    freed = sum(e.size for e in entries(folder))
    if folder.is_dir():
        shutil.rmtree(folder)
    return freed


def describe(size: float) -> str:
    """Bytes as `12.3 MB`."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def age(seconds_since_epoch: float) -> str:
    """How long ago, roughly (`5 min ago`, `3 h ago`, `2 d ago`)."""
    ago = max(0.0, time.time() - seconds_since_epoch)
    if ago < 3600:
        return f"{ago / 60:.0f} min ago"
    if ago < 86400:
        return f"{ago / 3600:.0f} h ago"
    return f"{ago / 86400:.0f} d ago"
