"""Lock files for cached steps (Prefect's SERIALIZABLE cache isolation) that survive killed runs.

Prefect's `FileSystemLockManager` keeps a lock until its holder releases it; a run killed while computing a step
(SIGKILL, a power cut) would leave the lock behind and every later run of that step would wait forever. Here each
lock also records its process (`<key>.owner`: host, pid and the process's start time); a lock whose process is gone
on this host, or whose pid now belongs to another process (started at another time), is stale and removed. A lock
held on another host (a remote worker) is trusted."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Optional

from prefect.locking.filesystem import FileSystemLockManager

from tasks.processes import process_started, same_process


class ProcessAwareLockManager(FileSystemLockManager):
    """`FileSystemLockManager` whose locks die with their process."""

    def _owner_path(self, key: str) -> Path:
        return self.lock_files_directory / f"{key}.owner"

    def _record_owner(self, key: str) -> None:
        path = self._owner_path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        started = process_started(os.getpid())
        tmp.write_text(f"{socket.gethostname()} {os.getpid()}" + (f" {started:.3f}" if started else ""), encoding="utf-8")
        os.replace(tmp, path)

    def _reclaim_if_owner_gone(self, key: str) -> bool:
        """Remove the lock when its process is gone on this host; True when it did. Several waiters may find the
        same dead owner: the owner file is taken away by an atomic rename, so exactly one of them removes the
        lock (the others keep waiting and then compete for a new lock as usual)."""
        owner = self._owner_path(key)
        try:
            recorded = owner.read_text(encoding="utf-8").split()
            host, pid = recorded[0], int(recorded[1])
            started = float(recorded[2]) if len(recorded) > 2 else None  # lock files of older versions: pid only
        except (OSError, ValueError, IndexError):
            return False  # no owner recorded yet (just acquired), or unreadable: trust the lock
        if host != socket.gethostname() or same_process(pid, started):
            return False
        claimed = owner.with_name(f".{owner.name}.reclaim.{os.getpid()}.{id(self)}")
        try:
            os.rename(owner, claimed)
        except FileNotFoundError:
            return False  # another waiter reclaimed it first
        try:
            if claimed.read_text(encoding="utf-8").split() == recorded:
                self._lock_path_for_key(key).unlink(missing_ok=True)
                self._locks.pop(key, None)
                return True
            os.rename(claimed, owner)  # a new holder's owner file appeared in between: put it back
            return False
        finally:
            claimed.unlink(missing_ok=True)

    def _get_lock_info(self, key: str, use_cache: bool = True) -> Optional[Any]:
        try:
            return super()._get_lock_info(key, use_cache)
        except ValueError:  # the holder has created the file but not written it yet: locked, holder unknown
            return {"holder": None, "expiration": None, "path": self._lock_path_for_key(key)}

    def is_locked(self, key: str, use_cache: bool = False) -> bool:
        if not super().is_locked(key, use_cache):
            return False
        return not self._reclaim_if_owner_gone(key)

    def acquire_lock(self, key: str, holder: str, acquire_timeout: Optional[float] = None,
                     hold_timeout: Optional[float] = None) -> bool:
        acquired = super().acquire_lock(key, holder, acquire_timeout, hold_timeout)
        if acquired:
            self._record_owner(key)
        return acquired

    async def aacquire_lock(self, key: str, holder: str, acquire_timeout: Optional[float] = None,
                            hold_timeout: Optional[float] = None) -> bool:
        acquired = await super().aacquire_lock(key, holder, acquire_timeout, hold_timeout)
        if acquired:
            self._record_owner(key)
        return acquired

    def drop_lock(self, key: str) -> None:
        """Remove the lock of `key` whoever holds it: for this process's own failed read of a damaged result, whose
        transaction ended without releasing it."""
        self._owner_path(key).unlink(missing_ok=True)
        self._lock_path_for_key(key).unlink(missing_ok=True)
        self._locks.pop(key, None)

    def release_lock(self, key: str, holder: str) -> None:
        if self.is_lock_holder(key, holder):  # the owner file first: a waiter may take the lock once its file is gone
            self._owner_path(key).unlink(missing_ok=True)
        super().release_lock(key, holder)
