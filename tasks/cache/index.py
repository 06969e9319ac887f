"""A small JSON index beside the step cache: the last key parts of each step (to say what changed on a miss) and
which MLflow run computed each key (to tag a run that reuses it); the same for whole runs (`runs`, `latest_runs`:
which finished MLflow run an unchanged rerun can reuse). Safe across processes (an exclusive file lock
around each read-modify-write, atomic replace)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, ContextManager, Mapping

from tasks.file_lock import exclusive

INDEX_FILE = "index.json"
MAX_KEYS = 2000
PART_NAMES = ("config", "data", "code", "versions")


def _locked(folder: Path) -> ContextManager[None]:
    return exclusive(folder / "index.lock")


def _read(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    for section in ("latest", "keys", "runs", "latest_runs"):
        data.setdefault(section, {})
    return data


def _write(folder: Path, data: dict[str, Any]) -> None:
    for section in ("keys", "runs"):
        entries = data[section]
        if len(entries) > MAX_KEYS:
            data[section] = dict(sorted(entries.items(), key=lambda kv: kv[1].get("time", 0))[-MAX_KEYS:])
    tmp = folder / f"{INDEX_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False), encoding="utf-8")
    os.replace(tmp, folder / INDEX_FILE)


def explain_change(old: Mapping[str, Mapping[str, str]] | None, new: Mapping[str, Mapping[str, str]]) -> str:
    """Which key parts differ from the last run of the step, naming the changed keys/modules/packages."""
    if not old:
        return "no earlier run of this step"
    changes = []
    for part in PART_NAMES:
        before, after = old.get(part, {}), new.get(part, {})
        if before == after:
            continue
        names = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        if part == "versions":
            shown = [f"{k} {before.get(k, '-')} -> {after.get(k, '-')}" for k in names]
        else:
            shown = names
        more = f", +{len(shown) - 4} more" if len(shown) > 4 else ""
        changes.append(f"{part} ({', '.join(shown[:4])}{more})")
    return "changed: " + "; ".join(changes) if changes else "same key as the last run, but no stored result"


def record(folder: Path, scope: str, key: str, parts: Mapping[str, Mapping[str, str]], cached: bool,
           refresh: bool, run_id: str | None) -> tuple[str, str | None]:
    """Record one decision; returns (why, the MLflow run that computed the reused result)."""
    with _locked(folder):
        data = _read(folder)
        previous = data["latest"].get(scope)
        origin = data["keys"].get(key, {}).get("run_id") if cached else None
        if cached:
            reason = "same key" + (f" as MLflow run {origin}" if origin else "")
        elif refresh:
            reason = "--no-cache"
        elif previous and previous.get("key") == key:
            reason = "same key as the last run, but the stored result is gone (cache folder cleared?)"
        else:
            reason = explain_change(previous.get("parts") if previous else None, parts)
        if not cached:
            data["keys"][key] = {"scope": scope, "run_id": run_id, "time": time.time()}
        elif key in data["keys"]:
            data["keys"][key]["used"] = time.time()  # least recently used results are evicted first
        data["latest"][scope] = {"key": key, "parts": parts}
        _write(folder, data)
    return reason, origin


def find_runs(folder: Path, key: str) -> list[str]:
    """MLflow runs that finished with whole-run key `key`, newest first."""
    with _locked(folder):
        entry = _read(folder)["runs"].get(key, {})
    return [e["run_id"] for e in sorted(entry.get("runs", []), key=lambda e: e.get("time", 0), reverse=True)]


def explain_run_miss(folder: Path, scope: str, parts: Mapping[str, Mapping[str, str]]) -> str:
    """What changed since the last finished run of `scope` (a pipeline in a tracking store)."""
    with _locked(folder):
        previous = _read(folder)["latest_runs"].get(scope)
    if previous is None:
        return "no earlier finished run of this pipeline"
    return explain_change(previous.get("parts"), parts)


def record_run(folder: Path, scope: str, key: str, parts: Mapping[str, Mapping[str, str]], run_id: str) -> None:
    """Record that MLflow run `run_id` finished with whole-run key `key` (the newest few per key are kept)."""
    with _locked(folder):
        data = _read(folder)
        entry = data["runs"].setdefault(key, {"scope": scope, "runs": []})
        entry["runs"] = [e for e in entry["runs"] if e.get("run_id") != run_id][-4:]
        entry["runs"].append({"run_id": run_id, "time": time.time()})
        entry["time"] = time.time()
        data["latest_runs"][scope] = {"key": key, "parts": parts}
        _write(folder, data)


def credit(folder: Path, key: str, run_id: str) -> None:
    """Record that MLflow run `run_id` computed `key` (runs deciding "computed" at the same moment all wrote their own
    id; the one whose training is in the stored result is the right one)."""
    with _locked(folder):
        data = _read(folder)
        if key in data["keys"]:
            data["keys"][key]["run_id"] = run_id
            _write(folder, data)


def key_entries(folder: Path) -> dict[str, dict[str, Any]]:
    """The index's entry of every key (scope, run_id, time computed, time last used)."""
    with _locked(folder):
        return dict(_read(folder)["keys"])


def forget(folder: Path, keys: list[str]) -> None:
    """Drop evicted keys from the index."""
    with _locked(folder):
        data = _read(folder)
        for key in keys:
            data["keys"].pop(key, None)
        _write(folder, data)
