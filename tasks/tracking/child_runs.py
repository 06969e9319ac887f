"""Close the nested runs (sweep trials, fusion members) a stopped parent run leaves open: their workers (Dask or Ray
processes, threads) die with the parent on SIGTERM or Ctrl-C and cannot mark their own runs, which would otherwise
stay RUNNING in the MLflow UI for ever."""
from __future__ import annotations

from typing import Any

from tasks.tracking import tags


def close_unfinished_children(client: Any, parent_run_id: str, status: str, reason: str) -> list[str]:
    """Mark every RUNNING child run of `parent_run_id` `status` (KILLED, FAILED) with `reason` as its error tag;
    the ids closed. Best effort: a store that refuses leaves them as they are (the parent's outcome says why)."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    try:
        parent = client.get_run(parent_run_id)
        children = client.search_runs([parent.info.experiment_id],
                                      f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}' and "
                                      "attributes.status = 'RUNNING'", max_results=10000)
    except Exception:  # noqa: BLE001 - the store is gone: nothing can be marked
        return []
    closed = []
    for child in children:
        try:
            client.set_tag(child.info.run_id, tags.ERROR, reason)
            client.set_terminated(child.info.run_id, status)
        except Exception:  # noqa: BLE001 - see the docstring
            continue
        closed.append(child.info.run_id)
    return closed
