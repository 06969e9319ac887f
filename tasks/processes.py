"""Whether a process is still there (light: no heavy imports, used by DDP workers, cache locks and --resume)."""
from __future__ import annotations

import os
from typing import Optional


def process_alive(pid: int) -> bool:
    """True when process `pid` exists on this machine (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def process_started(pid: int) -> Optional[float]:
    """When process `pid` started (seconds since the epoch), or None when it is gone or cannot be read: with the
    pid it names one process, even after the system hands the pid to another."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ValueError):
        return None


def same_process(pid: int, started: Optional[float]) -> bool:
    """True when `pid` is alive and (when `started` is known) is still the process that started then."""
    if not process_alive(pid):
        return False
    if started is None:
        return True
    now = process_started(pid)
    return now is None or abs(now - started) < 1.0

