"""The `runner:` section: which Prefect task runner runs a pipeline's independent work (fusion members, sweep
trials) — threads in this process, a Dask cluster (prefect-dask) or a Ray cluster (prefect-ray)."""
from __future__ import annotations

import importlib.util
import re
from typing import Literal, Optional

from pydantic import Field, model_validator

from tasks.registry import StrictModel

#: runner type -> (modules it needs, the pip extra that installs them)
RUNNER_PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "dask": (("prefect_dask", "distributed"), "dask"),
    "ray": (("prefect_ray", "ray"), "ray"),
}


#: what a scheduler address looks like: Dask's comm schemes, Ray's client/GCS addresses
ADDRESS = {
    "dask": re.compile(r"^((tcp|tls|ucx|ws|wss|inproc)://[^\s/]+|[\w.-]+:\d+)$"),
    "ray": re.compile(r"^(auto|ray://[^\s/]+|[\w.-]+:\d+)$"),
}


class RunnerConfig(StrictModel):
    """`runner: {type: thread|dask|ray, address: ..., workers: N}`.

    Without `address`, dask and ray start a local cluster of `workers` processes for the flow and shut it down
    with it; with one, the work goes to that running Dask scheduler (`tcp://host:8786`) or Ray cluster
    (`ray://host:10001`, or `auto`)."""

    type: Literal["thread", "dask", "ray"] = "thread"
    address: Optional[str] = Field(None, description="a running Dask scheduler or Ray cluster (dask/ray only)")
    workers: Optional[int] = Field(None, ge=1, le=1024,
                                   description="threads, or local cluster worker processes (default: the CPU count)")

    @model_validator(mode="after")
    def _address_needs_cluster(self) -> "RunnerConfig":
        if self.address and self.type == "thread":
            raise ValueError("`address` names a Dask scheduler or Ray cluster: set `type: dask` or `type: ray`")
        if self.address and not ADDRESS[self.type].match(self.address):
            raise ValueError(f"`address` {self.address!r} is not a {self.type} address: expected "
                             + ("tcp://HOST:PORT, HOST:PORT (or tls://, ucx://, ws://, wss://)" if self.type == "dask"
                                else "ray://HOST:PORT, HOST:PORT or auto"))
        if self.address and self.workers:
            raise ValueError("`workers` sizes the local cluster started when there is no `address`; an existing "
                             "cluster has its own workers: remove one of the two")
        return self

    def missing_packages(self) -> Optional[str]:
        """A message naming what to install when this runner's integration is not installed, else None."""
        if self.type not in RUNNER_PACKAGES:
            return None
        modules, extra = RUNNER_PACKAGES[self.type]
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if not missing:
            return None
        return (f"runner type '{self.type}' needs {', '.join(missing)}: pip install 'fuseflow[{extra}]' "
                f"(or `pip install {' '.join(m.replace('_', '-') for m in missing)}`)")
