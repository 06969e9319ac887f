"""Which Prefect API a `fuseflow run` talks to, decided before Prefect is imported.

1. `PREFECT_API_URL` in the environment: that server (it must answer).
2. Else the server of `fuseflow up` when `.fuseflow/stack.json` names one that answers: no start-up cost.
3. Else, when the active Prefect profile names a server, or Prefect is already imported here with an API url in
   its settings (as in-process under `prefect_test_harness`): Prefect's own choice, that server.
4. Else, by FUSEFLOW_PREFECT_SERVER: `background` (default) the project's background server, started by the first
   run and reused until idle (flows/local_server.py); `temporary` Prefect's temporary (ephemeral) server, started
   and stopped by every run (~7 s each).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager, Optional

from tasks.errors import ConfigError
from tasks.paths import STACK_FILE

if TYPE_CHECKING:
    from flows.local_server import BackgroundServer

API_ENV = "PREFECT_API_URL"
HEALTH_TIMEOUT_S = 1.0
#: a server the user named gets longer: on a loaded 2-core machine its /health can take seconds to answer
CONFIGURED_HEALTH_TIMEOUT_S = 5.0
CONFIGURED_HEALTH_ATTEMPTS = 3
MODE_ENV = "FUSEFLOW_PREFECT_SERVER"
MODES = ("background", "temporary")
#: how long a run waits for the background server's /api/health (a fresh database takes 8-15 s here)
READY_TIMEOUT_S = 60.0


class PrefectServerDown(RuntimeError):
    """PREFECT_API_URL names a server that does not answer."""


def answers(api_url: str, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """True when `<api_url>/health` answers 200 within `timeout` seconds."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def stack_api_url(folders: list[Path]) -> str | None:
    """The `prefect_api_url` of the first `.fuseflow/stack.json` found in `folders`."""
    for folder in folders:
        path = folder / STACK_FILE
        try:
            url = json.loads(path.read_text(encoding="utf-8")).get("prefect_api_url")
        except (OSError, ValueError, AttributeError):
            continue
        if url:
            return str(url)
    return None


def profile_api_url() -> Optional[str]:
    """PREFECT_API_URL of the active Prefect profile (PREFECT_PROFILE, else `active` of
    `$PREFECT_HOME/profiles.toml`), read without importing Prefect; None when it sets none."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        return None
    home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
    try:
        data = tomllib.loads((home / "profiles.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    profiles = data.get("profiles") if isinstance(data.get("profiles"), dict) else {}
    profile = profiles.get(os.environ.get("PREFECT_PROFILE") or data.get("active"))
    url = profile.get("PREFECT_API_URL") if isinstance(profile, dict) else None
    return str(url) if url else None


def loaded_settings_api_url() -> Optional[str]:
    """The API url of Prefect's current settings when Prefect is already imported in this process (how
    `prefect_test_harness` points runs at its server); None otherwise."""
    if "prefect.settings" not in sys.modules:
        return None
    try:
        url = sys.modules["prefect.settings"].get_current_settings().api.url
    except Exception:  # noqa: BLE001 - settings that cannot be read choose nothing
        return None
    return str(url) if url else None


def server_mode() -> str:
    """FUSEFLOW_PREFECT_SERVER: `background` (default) or `temporary`; anything else is a config error."""
    value = os.environ.get(MODE_ENV, "").strip().lower() or MODES[0]
    if value not in MODES:
        raise ConfigError.single(f"{MODE_ENV}={os.environ[MODE_ENV]!r}: expected one of: {', '.join(MODES)}")
    return value


@dataclass(frozen=True)
class PrefectApiChoice:
    """Which Prefect API a run uses: a line for the log, what to set in the environment while it runs, and the
    background server behind it, if any (then `wait_ready` before the flow and `hold` around the run)."""

    description: str
    env: dict[str, str] = field(default_factory=dict)
    server: Optional["BackgroundServer"] = field(default=None, compare=False, repr=False)

    def hold(self) -> ContextManager[None]:
        """Around the whole run: the background server's lease (so it is not stopped meanwhile); else nothing."""
        return self.server.lease() if self.server is not None else contextlib.nullcontext()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until the background server answers /api/health (it starts while the run imports); at once otherwise."""
        server = self.server
        if server is None:
            return
        deadline = time.monotonic() + timeout
        while not answers(server.api_url):
            if server.gone():
                raise PrefectServerDown(f"the background Prefect server stopped before it answered; see {server.log}")
            if time.monotonic() > deadline:
                raise PrefectServerDown(f"the background Prefect server at {server.api_url} did not answer within "
                                        f"{timeout:.0f} s; see {server.log}")
            time.sleep(0.2)


def choose_prefect_api(project_dir: Path | str | None = None) -> PrefectApiChoice:
    """The best Prefect API for a run (see the module doc); nothing is set here: the caller runs inside
    `flows.env.environment(choice.env)`. A background server is started (or found) here, and not waited for:
    `wait_ready` does that once the run's imports are done."""
    mode = server_mode()
    configured = os.environ.get(API_ENV)
    if configured:
        if not any(answers(configured, CONFIGURED_HEALTH_TIMEOUT_S) for _ in range(CONFIGURED_HEALTH_ATTEMPTS)):
            raise PrefectServerDown(f"{API_ENV}={configured} does not answer; start that server "
                                    f"(`prefect server start` or `fuseflow up`) or unset {API_ENV}")
        return PrefectApiChoice(f"Prefect server at {configured} ({API_ENV})")
    folders = [Path.cwd()] + ([Path(project_dir).resolve()] if project_dir else [])
    url = stack_api_url(folders)
    if url and answers(url):
        return PrefectApiChoice(f"Prefect server at {url} (from {STACK_FILE})", {API_ENV: url})
    url = profile_api_url()
    if url:
        return PrefectApiChoice(f"Prefect server at {url} (Prefect's own choice: the active profile's {API_ENV})")
    url = loaded_settings_api_url()
    if url:
        return PrefectApiChoice(f"Prefect server at {url} (Prefect's own choice: its current settings)")
    if mode == "temporary":
        return PrefectApiChoice(f"Prefect's temporary local server, started and stopped by this run ({MODE_ENV}="
                                "temporary; the default, background, keeps one running between runs)")
    from flows.local_server import ensure_server

    try:
        server = ensure_server(folders[-1])
    except OSError as exc:  # e.g. a read-only project folder: this run still works, the slow way
        return PrefectApiChoice(f"Prefect's temporary local server for this run (no background server: {exc})")
    return PrefectApiChoice(server.description, {API_ENV: server.api_url}, server)
