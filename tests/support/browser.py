"""A real headless Chromium for browser tests (Debian's `chromium` driven by Playwright), and the servers whose UIs
it opens: a `prefect server start` with its UI on, and an `mlflow server` over a project's sqlite store."""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from tests.support.servers import MlflowServer, prefect_server

#: executables tried in order; FUSEFLOW_CHROMIUM is not needed: CI installs Debian's `chromium` (see .ci/run)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: headless, no sandbox (root in CI), and none of Chromium's background calls home (refused offline, and noisy)
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1"]
PAGE_TIMEOUT_MS = 60_000  # page loads and element waits: the machine is slow and shared
NO_CHROMIUM = ("no Chromium executable found (looked for " + ", ".join(CHROMIUM_NAMES) + " on PATH): "
               "install one, e.g. `apt-get install -y chromium` as .ci/run does")


def find_chromium() -> Optional[str]:
    """The first Chromium-like executable on PATH, or None (then browser tests skip)."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@contextmanager
def chromium_page(executable: str, width: int = 1600, height: int = 1100) -> Iterator[Any]:
    """A Playwright page in a fresh headless Chromium profile; the browser and Playwright's driver stop on exit."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="fuseflow-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": height})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
            yield page
        finally:
            context.close()


@contextmanager
def shot_on_failure(page: Any, path: Path) -> Iterator[None]:
    """When the block fails: save a full-page screenshot, and add the page's URL and the screenshot to the error."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # AssertionError, Playwright's TimeoutError, pytest.fail
        try:
            page.screenshot(path=str(path), full_page=True)
            note = f"browser page {page.url}; screenshot {path}"
        except Exception as shot_error:  # noqa: BLE001 - the original failure matters more
            note = f"browser page: no screenshot ({shot_error})"
        if hasattr(exc, "add_note"):
            exc.add_note(note)
        else:  # Python 3.10: in the captured output
            print(note)
        raise


def prefect_ui_server(folder: Path) -> Any:
    """A real `prefect server start` with its UI (tests/support/servers.py)."""
    return prefect_server(folder, ui=True)


@contextmanager
def mlflow_ui_server(db: Path, folder: Path) -> Iterator[str]:
    """A real `mlflow server` (its UI) on a free loopback port over the sqlite store `db`, as `fuseflow up` starts
    it (artifacts beside the database); yields its URL."""
    from tasks.tracking.logger import artifact_root_for

    db.parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{db}"
    server = MlflowServer(folder, backend_uri=uri, artifact_root=str(artifact_root_for(uri)))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
