"""Whether a process is still there (light: no heavy imports, used by DDP workers, cache locks and --resume)."""
from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """True when process `pid` exists on this machine (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True
