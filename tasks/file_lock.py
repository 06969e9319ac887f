"""One exclusive lock file shared by every process of this machine: the read-modify-writes of the cache index,
promotions, the creation of a sqlite store and the start of the background Prefect server each take one."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created with its folder) for the block; closing the file releases it.
    Where `fcntl` does not exist (not POSIX) the block runs unserialised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        yield
