"""The step cache key covers the version of every installed distribution a step's code imports (a custom model's
third-party library included), so upgrading one recomputes the step instead of reusing a stale result."""
from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.cache import distributions, fingerprint
from tasks.cache.policy import StepCachePolicy


def install(site: Path, name: str, version: str, dist: str) -> None:
    """A minimal installed distribution `dist` (import name `name`) in the folder `site` (a site-packages)."""
    for old in site.glob(f"{dist.replace('-', '_')}-*.dist-info"):
        for item in old.iterdir():
            item.unlink()
        old.rmdir()
    package = site / name
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(f"VERSION = {version!r}\n")
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "top_level.txt").write_text(f"{name}\n")
    (info / "RECORD").write_text(f"{name}/__init__.py,,\n")


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """A site-packages folder with one third-party distribution, and a project module whose step imports it."""
    site = tmp_path / "lib" / "site-packages"
    site.mkdir(parents=True)
    project = tmp_path / "project"
    project.mkdir()
    (project / "custom_step_mod.py").write_text(textwrap.dedent("""\
        import ffthirdparty


        def custom_step(rows):
            return ffthirdparty.VERSION, rows
        """))
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.syspath_prepend(str(site))
    for cached in (fingerprint._installed_roots, fingerprint._top_level_is_project, distributions.installed_marker):
        cached.cache_clear()
    install(site, "ffthirdparty", "1.0", "ff-third-party")
    yield site
    for module in ("custom_step_mod", "ffthirdparty"):
        sys.modules.pop(module, None)
    for cached in (fingerprint._installed_roots, fingerprint._top_level_is_project, distributions.installed_marker):
        cached.cache_clear()


def key_parts(folder: Path) -> dict:
    import custom_step_mod

    importlib.reload(custom_step_mod)
    return StepCachePolicy(folder=folder).key_parts(custom_step_mod.custom_step, {"rows": [1, 2]})


def test_the_key_names_the_version_of_a_third_party_package_the_step_imports(fake_site, tmp_path):
    parts = key_parts(tmp_path / "cache")
    assert parts["versions"]["ff-third-party"] == "1.0"
    assert "custom_step_mod:custom_step" in parts["code"], "the project code is keyed by source, not by version"
    assert "fuseflow" not in parts["versions"]
    assert parts["versions"]["torch"], "the ML libraries stay in every key"


def test_upgrading_that_package_changes_the_key(fake_site, tmp_path):
    before = key_parts(tmp_path / "cache")
    install(fake_site, "ffthirdparty", "1.1", "ff-third-party")
    distributions.installed_marker.cache_clear()  # a new process sees the upgrade at once
    after = key_parts(tmp_path / "cache")
    assert after["versions"]["ff-third-party"] == "1.1"
    assert after["versions"] != before["versions"]
    assert {k: v for k, v in after.items() if k != "versions"} == {k: v for k, v in before.items() if k != "versions"}


def test_the_import_map_is_kept_in_the_cache_folder_and_rebuilt_when_packages_change(fake_site, tmp_path):
    import json

    folder = tmp_path / "cache"
    key_parts(folder)
    stored = json.loads((folder / distributions.MAP_FILE).read_text())
    assert stored["map"]["ffthirdparty"] == {"ff-third-party": "1.0"}
    install(fake_site, "ffthirdparty", "2.0", "ff-third-party")
    distributions.installed_marker.cache_clear()
    key_parts(folder)
    assert json.loads((folder / distributions.MAP_FILE).read_text())["map"]["ffthirdparty"] == {"ff-third-party": "2.0"}


def test_standard_library_imports_are_not_versioned(tmp_path):
    found: set[str] = set()
    fingerprint.module_closure(["json", "os.path", "tasks.cache.distributions"], found)
    assert "json" not in found and "os" not in found and "tasks" not in found
