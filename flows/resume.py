"""`fuseflow run NAME --resume`: find the latest unfinished MLflow run of a pipeline with the same config.

Unfinished: FAILED, KILLED, or RUNNING while the process that started it is gone (a SIGKILL or a power cut leaves a
run RUNNING). A run whose process is still alive on this machine is never taken over.
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Any, Optional

from tasks.processes import process_started, same_process
from tasks.tracking import tags

log = logging.getLogger("fuseflow")

UNFINISHED = ("RUNNING", "FAILED", "KILLED")


def process_tags() -> dict[str, Optional[str]]:
    """Tags that let a later `--resume` tell a crashed run from one still running: host, pid and the process' start
    time (a pid the system handed to another process since is not the run's)."""
    started = process_started(os.getpid())
    return {tags.HOST: socket.gethostname(), tags.PID: str(os.getpid()),
            tags.PROCESS_STARTED: repr(started) if started is not None else None}


def is_alive(run: Any) -> bool:
    """True when the run is RUNNING and the process that runs it (pid and start time) still exists on this
    machine."""
    if run.info.status != "RUNNING":
        return False
    run_tags = run.data.tags
    if run_tags.get(tags.HOST) != socket.gethostname() or not run_tags.get(tags.PID, "").isdigit():
        return False  # another machine: cannot tell; its owner may resume it there
    pid = int(run_tags[tags.PID])
    if pid == os.getpid():
        return False  # this process (an earlier run in the same process that died with its flow)
    started = run_tags.get(tags.PROCESS_STARTED)
    try:
        started_at = float(started) if started else None  # runs of older versions: the pid alone
    except ValueError:
        started_at = None
    return same_process(pid, started_at)


def find_resumable_run(client: Any, experiment_id: str, pipeline: str, config_hash: str) -> Optional[Any]:
    """The latest unfinished, not-alive run of `pipeline` whose config hash is `config_hash`, or None."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(f"tags.`{tags.PIPELINE}` = '{pipeline}' and tags.`{tags.CONFIG_HASH}` = '{config_hash}'"
                       " and attributes.status != 'FINISHED'"),
        order_by=["attributes.start_time DESC"], max_results=50)
    for run in runs:
        if run.info.status not in UNFINISHED:
            continue
        if is_alive(run):
            log.info("MLflow run %s of '%s' is still running (pid %s); not resuming it",
                     run.info.run_id, pipeline, run.data.tags.get(tags.PID))
            continue
        return run
    return None


def reopen_run(client: Any, run: Any, extra_tags: dict[str, Any]) -> None:
    """Mark `run` RUNNING again under this process, counting the resumes."""
    from mlflow.entities import RunTag

    count = int(run.data.tags.get(tags.RESUMED, "0") or 0) + 1
    new_tags = {**extra_tags, **process_tags(), tags.RESUMED: str(count)}
    client.update_run(run.info.run_id, status="RUNNING")
    if tags.ERROR in run.data.tags:  # the error that stopped it no longer describes the run
        client.delete_tag(run.info.run_id, tags.ERROR)
    client.log_batch(run.info.run_id, tags=[RunTag(k, str(v)) for k, v in new_tags.items() if v is not None])
    log.info("resuming MLflow run %s (resume #%d)", run.info.run_id, count)
