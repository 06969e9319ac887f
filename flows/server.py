"""Which Prefect API a `fuseflow run` talks to, decided before Prefect is imported.

1. `PREFECT_API_URL` in the environment: that server (it must answer).
2. Else the server of `fuseflow up` when `.fuseflow/stack.json` names one that answers: no start-up cost.
3. Else Prefect's own choice: a server set in the active Prefect profile, or its temporary (ephemeral) server,
   which costs several seconds per run.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
import urllib.error
import urllib.request
from pathlib import Path

from tasks.paths import STACK_FILE

API_ENV = "PREFECT_API_URL"
HEALTH_TIMEOUT_S = 1.0
#: a server the user named gets longer: on a loaded 2-core machine its /health can take seconds to answer
CONFIGURED_HEALTH_TIMEOUT_S = 5.0
CONFIGURED_HEALTH_ATTEMPTS = 3


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


@dataclass(frozen=True)
class PrefectApiChoice:
    """Which Prefect API a run uses: a line for the log, and what to set in the environment while it runs."""

    description: str
    env: dict[str, str] = field(default_factory=dict)


def choose_prefect_api(project_dir: Path | str | None = None) -> PrefectApiChoice:
    """The best Prefect API for a run (see the module doc); nothing is set here: the caller runs inside
    `flows.env.environment(choice.env)`."""
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
    return PrefectApiChoice("Prefect's own API choice (a profile's server, else a temporary local server: start "
                            "`fuseflow up` to save its start-up time)")
