"""What every DDP training process does, whatever its backend: report to the launcher, open the run on rank 0, save
the final weights and digests, and, as `run_rank`, the process' entry: run the backend's `train_rank`, write this
rank's error file when it fails, and leave without the interpreter's teardown.

A worker module (tasks/train/ddp/torch_worker.py, hf_worker.py) ends with `run_rank(train_rank)` under
`if __name__ == "__main__"`; the launcher starts it with `python -m torch.distributed.run ... -m WORKER FOLDER`.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

TrainRank = Callable[[Path, int, int, int], None]  # (folder, rank, local_rank, world size)


def say(line: str) -> None:
    """One line to the launcher in one write (the ranks share its pipe: separate writes could interleave)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def open_run(inputs: dict[str, Any]) -> Any:
    """Rank 0's `RunLogger` on the launcher's MLflow run (None without a run)."""
    if not inputs["run_id"]:
        return None
    from tasks.tracking.logger import RunLogger

    return RunLogger(inputs["run_id"], inputs["tracking_uri"])


def tag_process_group(logger: Any) -> None:
    """The run's world-size and backend tags, read from the live process group."""
    import torch.distributed as dist

    from tasks.tracking import tags

    if logger is not None:
        logger.set_tags({tags.WORLD_SIZE: dist.get_world_size(), tags.DISTRIBUTED_BACKEND: dist.get_backend()})


def report_epoch(line: str) -> None:
    """Rank 0's epoch line (`tasks.train.observers.EpochLog`) to the launcher, marked: the launcher logs it into the
    Prefect run's logs as it comes, as the single process does."""
    from tasks.train.ddp.launcher import EPOCH_PREFIX

    say(EPOCH_PREFIX + line)


def orphaned(launcher_pid: int, epoch: int) -> RuntimeError:
    return RuntimeError(f"the launching process {launcher_pid} is gone: training stops after epoch {epoch} (its "
                        "checkpoint is in the run for a --resume)")


def finish_rank(folder: Path, rank: int, model: Any, result: Any) -> None:
    """Rank 0 saves the final weights and the result; every rank writes its weights' digest; then the group ends."""
    import torch
    import torch.distributed as dist

    from tasks.cache.fingerprint import weights_digest
    from tasks.train.ddp.launcher import FINAL

    if rank == 0:
        tmp = folder / f".{FINAL}.tmp"
        torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "result": asdict(result)}, tmp)
        os.replace(tmp, folder / FINAL)
    (folder / f"digest-{rank}").write_text(weights_digest(model), encoding="utf-8")
    dist.barrier()
    dist.destroy_process_group()


def run_rank(train_rank: TrainRank, argv: list[str] | None = None) -> None:
    """The worker process: `train_rank(FOLDER, rank, local_rank, world)` from torchrun's environment; on failure
    FOLDER/error-RANK.json (its error line and when it happened), which the launcher reads."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m torch.distributed.run ... -m tasks.train.ddp.<worker> FOLDER", file=sys.stderr)
        os._exit(2)
    folder = Path(argv[0])
    rank, local_rank, world = (int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    try:
        from tasks.registry import load_components

        load_components()  # the configs in the payload are unpickled and used here: their registries first
        train_rank(folder, rank, local_rank, world)
    except BaseException as exc:
        error = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line
        (folder / f"error-{rank}.json").write_text(json.dumps({
            "rank": rank, "time": time.time(), "error": error,
            "traceback": traceback.format_exc()}), encoding="utf-8")
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)  # not through the interpreter's exit: a broken process group may hang in its teardown
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written (weights, digest, run, checkpoints) and the process group is gone: skip the interpreter's
    # teardown of torch and MLflow, which took ~3 s per rank here (torchrun waits for the slowest rank).
    os._exit(0)
