"""`fuseflow cache info|prune|clear`: what the step cache of a project holds, and freeing it."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from tasks.cache import store


def cache_lines(project_dir: Path) -> list[str]:
    """Where the cache is, its size against the cap, and its results grouped by step, newest use last."""
    from tasks.cache.policy import cache_dir

    folder = cache_dir(project_dir)
    found = store.entries(folder)
    if not found:
        return [f"step cache {folder}: empty"]
    total = sum(e.size for e in found)
    lines = [f"step cache {folder}: {len(found)} results, {store.describe(total)} "
             f"(cap {store.describe(store.max_bytes())}, {store.MAX_GB_ENV}; least recently used evicted first)"]
    by_scope: dict[str, list[store.Entry]] = {}
    for entry in found:
        by_scope.setdefault(entry.scope, []).append(entry)
    for scope, items in sorted(by_scope.items()):
        lines.append(f"  {scope}: {len(items)} result(s), {store.describe(sum(e.size for e in items))}, "
                     f"last used {store.age(max(e.used for e in items))}")
    return lines


def prune_cache(project_dir: Path, max_gb: Optional[float]) -> str:
    """Evict least recently used results down to `max_gb` (default: the cap)."""
    from tasks.cache.policy import cache_dir

    folder = cache_dir(project_dir)
    limit = store.max_bytes(max_gb)
    evicted = store.prune(folder, limit)
    left = sum(e.size for e in store.entries(folder))
    return (f"evicted {len(evicted)} result(s), {store.describe(sum(e.size for e in evicted))}; "
            f"{store.describe(left)} left (limit {store.describe(limit)})")


def clear_cache(project_dir: Path) -> str:
    from tasks.cache.policy import cache_dir

    folder = cache_dir(project_dir)
    return f"removed {folder} ({store.describe(store.clear(folder))} of results); the next run computes again"
