"""A cache lock's holder is a process, not a pid: the lock records the holder's start time, so a pid the system has
handed to another process (a long-lived machine, a container restarted) no longer holds it."""
from __future__ import annotations

import os
import socket

from tasks.cache.locks import ProcessAwareLockManager
from tasks.processes import process_started, same_process


def test_a_reused_pid_does_not_hold_the_lock(tmp_path):
    locks = ProcessAwareLockManager(tmp_path / "locks")
    assert locks.acquire_lock("step-key", holder="me")
    owner = tmp_path / "locks" / "step-key.owner"
    host, pid, started = owner.read_text().split()
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert abs(float(started) - process_started(os.getpid())) < 0.01
    other = ProcessAwareLockManager(tmp_path / "locks")
    assert other.is_locked("step-key")  # the live holder holds
    # the holder died and its pid went to this (live) process, which started at another time
    owner.write_text(f"{host} {os.getpid()} {float(started) - 3600:.3f}")
    assert not other.is_locked("step-key")
    assert not owner.exists() and not (tmp_path / "locks" / "step-key.lock").exists()
    assert other.acquire_lock("step-key", holder="other", acquire_timeout=1)


def test_an_owner_file_without_a_start_time_still_means_its_pid(tmp_path):
    """Lock files written by an older fuseflow (host and pid only) keep their meaning."""
    locks = ProcessAwareLockManager(tmp_path / "locks")
    assert locks.acquire_lock("step-key", holder="me")
    owner = tmp_path / "locks" / "step-key.owner"
    owner.write_text(f"{socket.gethostname()} {os.getpid()}")
    assert ProcessAwareLockManager(tmp_path / "locks").is_locked("step-key")


def test_same_process():
    me = os.getpid()
    assert same_process(me, None) and same_process(me, process_started(me))
    assert not same_process(me, process_started(me) - 100.0)
    assert process_started(2**22 + 12345) is None and not same_process(2**22 + 12345, None)
