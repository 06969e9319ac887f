"""Run names that say what a run changed (`digits-mlp lr=0.003 epochs=3`), for the MLflow run and the Prefect flow
run; a Run Name typed in the Prefect form is kept, only Prefect's random two-word names are replaced."""
from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path
from typing import Any, Mapping, Optional

log = logging.getLogger("fuseflow")

#: MLflow allows 250 characters in a run name; Prefect shows ~60 well
MAX_NAME = 200
_SLUG = re.compile(r"^([a-z]+)-([a-z]+)$")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def run_name(pipeline: str, changes: Mapping[str, Any]) -> str:
    """`digits-mlp lr=0.003 epochs=3`: the pipeline and each changed value under the last part of its key (two
    parts where the last is not unique, e.g. `optimizer.name=sgd scheduler.name=cosine`)."""
    lasts = [key.rsplit(".", 1)[-1] for key in changes]
    parts = []
    for key, value in changes.items():
        label = key.rsplit(".", 1)[-1]
        if lasts.count(label) > 1:
            label = ".".join(key.split(".")[-2:])
        parts.append(f"{label}={_text(value)}")
    name = " ".join([pipeline, *parts])
    return name if len(name) <= MAX_NAME else name[:MAX_NAME - 3] + "..."


@functools.lru_cache(maxsize=1)
def _coolname_words() -> frozenset[str]:
    """The words of `coolname`'s lists, which Prefect's `generate_slug(2)` draws a flow run's default name from."""
    import coolname

    words: set[str] = set()
    for path in (Path(coolname.__file__).parent / "data").glob("*.txt"):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" not in line:
                words.update(line.split())
    return frozenset(words)


def is_generated_name(name: Optional[str]) -> bool:
    """Whether `name` is one Prefect made up (`generate_slug(2)`: two coolname words, e.g. `casual-panda`)."""
    match = _SLUG.match(name or "")
    if not match:
        return False
    words = _coolname_words()
    return match.group(1) in words and match.group(2) in words


def name_flow_run(name: str) -> None:
    """Name the current Prefect flow run `name` unless someone named it (a Run Name typed in the form, `--name`)."""
    from prefect.runtime import flow_run

    run_id, current = flow_run.id, flow_run.name
    if not run_id or current == name or not is_generated_name(current):
        return
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_name(run_id, name)
    except Exception as exc:  # noqa: BLE001 - a name is cosmetic: never fail the run for it
        log.warning("could not rename flow run %s to %r: %s: %s", current, name, type(exc).__name__, exc)
