"""Phase timings of a run: start-up from the command's start, each phase timed, logged as metrics and a table."""
from __future__ import annotations

import time


def test_phases_add_up_and_startup_counts_from_the_command_start():
    from tasks.tracking.phases import PhaseTimer, startup_clock

    with startup_clock(time.time() - 2.0):
        timer = PhaseTimer()
    with timer.phase("train"):
        time.sleep(0.05)
    with timer.phase("train"):
        time.sleep(0.05)
    timer.opened()
    assert list(timer.seconds) == ["startup", "train", "open-run"]
    assert 2.0 <= timer.seconds["startup"] < 3.0
    assert timer.seconds["train"] >= 0.1
    assert set(timer.metrics()) == {"timing/startup_s", "timing/train_s", "timing/open-run_s"}
    assert abs(sum(row["share"] for row in timer.rows()) - 1) < 0.01
    assert "train 0.1" in timer.summary()
    assert "startup" not in PhaseTimer().seconds  # outside a command: no start-up phase


def test_process_start_is_this_process_start():
    import psutil

    from tasks.tracking.phases import process_started_at

    started = process_started_at()
    assert started <= time.time()
    assert abs(started - psutil.Process().create_time()) < 1.5  # psutil is whole-second coarse here


def test_timings_never_fail_the_run(caplog):
    import logging

    from tasks.tracking.phases import PhaseTimer, log_timings

    class Broken:
        def log_metrics(self, metrics):
            raise ConnectionError("tracking server gone")

    timer = PhaseTimer()
    timer.add("train", 1.0)
    log_timings(timer, Broken(), logging.getLogger("fuseflow"))
    assert "could not log the run's timings" in caplog.text
