"""Prefect's Ray task runner, keeping the process' SIGTERM handling: `ray.init` in the driver replaces the SIGTERM
handler (Prefect's flow engine's, which hands the signal on to fuseflow's) with one that calls `sys.exit`, so a
`docker stop` crashed the flow run and aborted the process instead of ending the run KILLED with exit 143."""
from __future__ import annotations

from typing import Any

from prefect_ray import RayTaskRunner

from flows.signals import sigterm_handler_kept


class SignalKeepingRayTaskRunner(RayTaskRunner):
    """`RayTaskRunner` that puts back the SIGTERM handler `ray.init` replaced (`duplicate()` keeps the class)."""

    def __enter__(self) -> Any:
        with sigterm_handler_kept():
            return super().__enter__()
