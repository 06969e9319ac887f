"""The step cache as a whole: sizes, least-recently-used eviction under a cap, held locks kept, and the
`fuseflow cache info|prune|clear` command."""
from __future__ import annotations

import json
import time

import pytest

from flows.cli import main


def _cache(folder, entries):
    """A cache folder with results of `size` bytes, computed and last used at the given times."""
    (folder / "results").mkdir(parents=True)
    (folder / "keys").mkdir()
    keys = {}
    for key, size, computed, used in entries:
        (folder / "results" / key).write_bytes(b"x" * size)
        (folder / "keys" / key).write_text("{}")
        keys[key] = {"scope": f"demo/{key[:5]}", "run_id": "r", "time": computed, **({"used": used} if used else {})}
    (folder / "index.json").write_text(json.dumps({"latest": {}, "keys": keys}))
    return folder


def test_prune_evicts_the_least_recently_used_first_and_keeps_held_locks(tmp_path):
    from tasks.cache import store

    now = time.time()
    folder = _cache(tmp_path / "cache", [("old-unused", 1000, now - 500, None), ("old-but-used", 1000, now - 900, now),
                                         ("newer", 1000, now - 100, None), ("locked", 1000, now - 1000, None)])
    (folder / "locks").mkdir()
    (folder / "locks" / "locked.lock").write_text("held")
    assert [e.key for e in store.entries(folder)] == ["locked", "old-unused", "newer", "old-but-used"]
    evicted = store.prune(folder, 2100)
    assert [e.key for e in evicted] == ["old-unused", "newer"]  # the locked one is in use: kept
    assert sorted(p.name for p in (folder / "results").iterdir()) == ["locked", "old-but-used"]
    assert not (folder / "keys" / "newer").exists()
    assert set(json.loads((folder / "index.json").read_text())["keys"]) == {"locked", "old-but-used"}
    assert store.prune(folder, 10**9) == []


def test_the_cap_comes_from_the_environment(monkeypatch):
    from tasks.cache import store

    monkeypatch.setenv("FUSEFLOW_CACHE_MAX_GB", "0.5")
    assert store.max_bytes() == 512 * 1024**2
    assert store.max_bytes(2) == 2 * 1024**3
    with pytest.raises(ValueError, match=">= 0 GB"):
        store.max_bytes(-1)


def test_cache_info_prune_and_clear_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FUSEFLOW_CACHE_DIR", raising=False)
    now = time.time()
    (tmp_path / "pipelines.yaml").write_text("pipelines: {}\n")
    folder = _cache(tmp_path / ".fuseflow" / "cache", [("aaaaa1", 3000, now - 50, None), ("bbbbb2", 2000, now, None)])
    file = str(tmp_path / "pipelines.yaml")
    assert main(["cache", "info", "--file", file]) == 0
    out = capsys.readouterr().out
    assert "2 results, 4.9 KB" in out and "demo/aaaaa: 1 result(s), 2.9 KB" in out
    assert main(["cache", "prune", "--max-gb", str(2500 / 1024**3), "--file", file]) == 0
    assert "evicted 1 result(s), 2.9 KB; 2.0 KB left" in capsys.readouterr().out
    assert [p.name for p in (folder / "results").iterdir()] == ["bbbbb2"]
    assert main(["cache", "clear", "--file", file]) == 0
    assert "removed" in capsys.readouterr().out and not folder.exists()
    assert main(["cache", "info", "--file", file]) == 0
    assert "empty" in capsys.readouterr().out
