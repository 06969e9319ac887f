"""One DDP training process, started by torchrun from `tasks.distributed.run_ranks`:

    python -m torch.distributed.run --standalone --nproc_per_node N -m tasks.ddp_worker FOLDER [MODULE:FUNCTION]

`main` runs MODULE:FUNCTION(folder, rank, local_rank, world_size) (default: `train_rank` here, the torch backend;
`tasks.ddp_hf_worker.train_rank` runs the HF Trainer) and writes the error file when it fails. `train_rank` reads
the step's inputs from FOLDER/inputs.pt, joins the process group, wraps the model in `DistributedDataParallel` and
trains with `tasks.train_torch.train_torch` (the same loop as one process), on its
`DistributedSampler` share of each epoch. Rank 0 alone logs epoch metrics to the MLflow run, writes checkpoints and
the final weights (FOLDER/final.pt). Every rank writes FOLDER/digest-RANK (sha256 of its final weights), or, when
it fails, FOLDER/error-RANK.json (its error line and when it happened), which the launcher reads.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tasks.processes import process_alive


class LengthGroupedShards:
    """A `DistributedSampler` for batch sources with their own epoch order (text grouped by length): the order is
    drawn from a generator seeded by `seed + epoch` (the same on every rank), padded to a multiple of the world size
    and dealt out rank by rank, as `DistributedSampler` deals out its permutation."""

    def __init__(self, source: Any, num_replicas: int, rank: int, seed: int) -> None:
        import math

        self.source, self.num_replicas, self.rank, self.seed, self.epoch = source, num_replicas, rank, seed, 0
        self.num_samples = math.ceil(len(source) / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        import torch

        order = self.source.epoch_order(torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        total = self.num_samples * self.num_replicas
        order += (order * (total // max(1, len(order)) + 1))[:total - len(order)]
        return iter(order[self.rank:total:self.num_replicas])


def say(line: str) -> None:
    """One line to the launcher in one write (the ranks share its pipe: separate writes could interleave)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def make_sampler(X_train: Any, world: int, rank: int, seed: int) -> Any:
    """This rank's share of each epoch: `DistributedSampler` over the rows (shuffled with `seed`), or
    `LengthGroupedShards` for a batch source that groups rows by length."""
    from torch.utils.data import DistributedSampler

    if getattr(X_train, "group_by_length", False) and hasattr(X_train, "epoch_order"):
        return LengthGroupedShards(X_train, world, rank, seed)
    return DistributedSampler(range(len(X_train)), num_replicas=world, rank=rank, shuffle=True, seed=seed)


def open_run(inputs: dict[str, Any]) -> Any:
    """Rank 0's `RunLogger` on the launcher's MLflow run (None without a run)."""
    if not inputs["run_id"]:
        return None
    from tasks.tracking import RunLogger

    return RunLogger(inputs["run_id"], inputs["tracking_uri"])


def tag_process_group(logger: Any) -> None:
    """The run's world-size and backend tags, read from the live process group."""
    import torch.distributed as dist

    from tasks.distributed import TAG_BACKEND, TAG_WORLD_SIZE

    if logger is not None:
        logger.set_tags({TAG_WORLD_SIZE: dist.get_world_size(), TAG_BACKEND: dist.get_backend()})


def epoch_line(epoch: int, epochs: int, metrics: dict[str, float]) -> None:
    say(f"epoch {epoch}/{epochs}: " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))


def orphaned(launcher_pid: int, epoch: int) -> RuntimeError:
    return RuntimeError(f"the launching process {launcher_pid} is gone: training stops after epoch {epoch} (its "
                        "checkpoint is in the run for a --resume)")


def finish_rank(folder: Path, rank: int, model: Any, result: Any) -> None:
    """Rank 0 saves the final weights and the result; every rank writes its weights' digest; then the group ends."""
    import torch
    import torch.distributed as dist

    from tasks.distributed import FINAL, weights_digest

    if rank == 0:
        tmp = folder / f".{FINAL}.tmp"
        torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "result": asdict(result)}, tmp)
        os.replace(tmp, folder / FINAL)
    (folder / f"digest-{rank}").write_text(weights_digest(model), encoding="utf-8")
    dist.barrier()
    dist.destroy_process_group()


def train_rank(folder: Path, rank: int, local_rank: int, world: int) -> None:
    """The torch backend: `train_torch` on the DDP-wrapped model with this rank's sampler."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from tasks.checkpoint import Checkpointer, epoch_hooks
    from tasks.distributed import INPUTS
    from tasks.train_common import resolve_device
    from tasks.train_torch import train_torch

    inputs = torch.load(folder / INPUTS, map_location="cpu", weights_only=False)
    backend, config, seed = inputs["backend"], inputs["config"], inputs["seed"]
    if backend == "nccl":
        torch.cuda.set_device(local_rank)  # "cuda" below is this rank's GPU
    dist.init_process_group(backend)
    model = inputs["model"]
    device = resolve_device(config.device)
    model.to(device)
    ddp = DistributedDataParallel(model, device_ids=[local_rank] if device == "cuda" else None)
    sampler = make_sampler(inputs["data"]["train"][0], world, rank, seed)

    on_epoch_end, checkpoint = None, None
    if rank == 0:  # the only rank that reports: MLflow run, checkpoints, a line per epoch
        logger = open_run(inputs)
        tag_process_group(logger)
        if logger is not None and inputs["checkpoint_every"]:
            checkpoint = Checkpointer(logger, inputs["checkpoint_every"], inputs["checkpoint_keep"])
        hooks, _ = epoch_hooks(logger, checkpoint, inputs["resume"])  # every rank resumes from the launcher's state

        def on_epoch_end(epoch: int, metrics: dict[str, float], state: dict[str, Any]) -> None:
            hooks(epoch, metrics, state)
            if not process_alive(inputs["launcher_pid"]):  # killed (SIGKILL): nobody waits for the result; stop every rank
                if checkpoint is not None:
                    checkpoint.wait()
                raise orphaned(inputs["launcher_pid"], epoch)
            epoch_line(epoch, config.epochs, metrics)

    result = train_torch(ddp, inputs["data"], inputs["task"], config, seed, on_epoch_end=on_epoch_end,
                         resume=inputs["resume"], show_progress=False, sampler=sampler)
    if checkpoint is not None:
        checkpoint.wait()  # the last checkpoint is in the run before the launcher goes on
    finish_rank(folder, rank, model, result)


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: python -m torch.distributed.run ... -m tasks.ddp_worker FOLDER [MODULE:FUNCTION]",
              file=sys.stderr)
        return 2
    folder = Path(argv[0])
    rank, local_rank, world = (int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    try:
        entry = train_rank
        if len(argv) == 2:  # the backend's training function (tasks.distributed.TORCH_ENTRY / HF_ENTRY)
            import importlib

            module, _, name = argv[1].partition(":")
            entry = getattr(importlib.import_module(module), name)
        entry(folder, rank, local_rank, world)
    except BaseException as exc:
        error = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line
        (folder / f"error-{rank}.json").write_text(json.dumps({
            "rank": rank, "time": time.time(), "error": error,
            "traceback": traceback.format_exc()}), encoding="utf-8")
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)  # not through the interpreter's exit: a broken process group may hang in its teardown
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written (weights, digest, run, checkpoints) and the process group is gone: skip the interpreter's
    # teardown of torch and MLflow, which took ~3 s per rank here (torchrun waits for the slowest rank).
    os._exit(code)
