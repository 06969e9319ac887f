"""Where fuseflow keeps its state in a project folder (all of it safe to delete; README "Where state lives").

    .fuseflow/cache/        step results, cache records, lock files, the index (FUSEFLOW_CACHE_DIR moves it)
    .fuseflow/checkpoints/  training checkpoints of runs whose artifacts are not local files
    .fuseflow/logs/         one log file per command, with the tracebacks (FUSEFLOW_LOG_DIR moves it)
    .fuseflow/stack.json    the addresses of a running `fuseflow up`
    .fuseflow/prefect-server/  the background Prefect server of `fuseflow run`: its state, database and log
"""
from __future__ import annotations

from pathlib import Path

STATE_DIR = Path(".fuseflow")
CACHE_DIR = STATE_DIR / "cache"
CHECKPOINT_DIR = STATE_DIR / "checkpoints"
LOG_DIR = STATE_DIR / "logs"
STACK_FILE = STATE_DIR / "stack.json"
#: the background Prefect server that `fuseflow run` starts and reuses (flows/local_server.py), beside pipelines.yaml
PREFECT_SERVER_DIR = STATE_DIR / "prefect-server"
#: the temporary pipelines file of a `fuseflow rerun` (in the project folder, so relative data paths resolve)
RERUN_FILE_PREFIX = ".fuseflow-rerun-"
