"""One DDP training process, started by torchrun from `tasks.train.ddp.launcher.run_ranks`:

    python -m torch.distributed.run --standalone --nproc_per_node N -m tasks.train.ddp.torch_worker FOLDER

`tasks.train.ddp.rank.run_rank` runs `train_rank` here and writes the error file when it fails. `train_rank` reads
the step's inputs from FOLDER/inputs.pt, joins the process group, wraps the model in `DistributedDataParallel` and
trains with `tasks.train.backends.torch_loop.train_torch` (the same loop as one process), on its
`DistributedSampler` share of each epoch. Rank 0 alone logs epoch metrics to the MLflow run, writes checkpoints and
the final weights (FOLDER/final.pt). Every rank writes FOLDER/digest-RANK (sha256 of its final weights), or, when
it fails, FOLDER/error-RANK.json (its error line and when it happened), which the launcher reads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.processes import process_alive
from tasks.train.ddp.rank import finish_rank, open_run, orphaned, report_epoch, run_rank, tag_process_group


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


def make_sampler(X_train: Any, world: int, rank: int, seed: int) -> Any:
    """This rank's share of each epoch: `DistributedSampler` over the rows (shuffled with `seed`), or
    `LengthGroupedShards` for a batch source that groups rows by length."""
    from torch.utils.data import DistributedSampler

    if getattr(X_train, "group_by_length", False) and hasattr(X_train, "epoch_order"):
        return LengthGroupedShards(X_train, world, rank, seed)
    return DistributedSampler(range(len(X_train)), num_replicas=world, rank=rank, shuffle=True, seed=seed)


def train_rank(folder: Path, rank: int, local_rank: int, world: int) -> None:
    """The torch backend: `train_torch` on the DDP-wrapped model with this rank's sampler."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from tasks.train.checkpoint import Checkpointer, epoch_hooks
    from tasks.train.ddp.launcher import INPUTS
    from tasks.train.common import resolve_device
    from tasks.train.backends.torch_loop import monitor_of, train_torch
    from tasks.train.observers import EpochLog

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
        hooks, _ = epoch_hooks(logger, checkpoint, inputs["resume"],  # every rank resumes from the launcher's state
                               progress=EpochLog(config.epochs, monitor_of(config), sink=report_epoch))

        def on_epoch_end(epoch: int, metrics: dict[str, float], state: dict[str, Any]) -> None:
            hooks(epoch, metrics, state)
            if not process_alive(inputs["launcher_pid"]):  # killed (SIGKILL): nobody waits for the result; stop every rank
                if checkpoint is not None:
                    checkpoint.wait()
                raise orphaned(inputs["launcher_pid"], epoch)

    result = train_torch(ddp, inputs["data"], inputs["task"], config, seed, on_epoch_end=on_epoch_end,
                         resume=inputs["resume"], sampler=sampler)
    if checkpoint is not None:
        checkpoint.wait()  # the last checkpoint is in the run before the launcher goes on
    finish_rank(folder, rank, model, result)


if __name__ == "__main__":
    run_rank(train_rank)
