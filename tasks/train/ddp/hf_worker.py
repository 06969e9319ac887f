"""One DDP process of `backend: hf_trainer`, started by `tasks.train.ddp.launcher.train_hf_distributed`:

    python -m torch.distributed.run --standalone --nproc_per_node N -m tasks.train.ddp.hf_worker FOLDER

(`tasks.train.ddp.rank.run_rank` writes the error file when this fails.) Every rank builds the Trainer with
`tasks.train.backends.hf_trainer.train_hf`, as the single process does, with `ddp_backend`: the Trainer joins the process group from
torchrun's environment, wraps the model in DDP and shards each epoch's batches. Rank 0 alone logs the epoch metrics
to the MLflow run (the single-process names and steps) and writes the Trainer's checkpoints; it writes the final
weights, and every rank the digest of its own (see `tasks.train.ddp.rank.finish_rank`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def orphan_guard(launcher_pid: int) -> Any:
    """A `TrainerCallback` that stops training (an error on rank 0: torchrun then stops every rank) when the
    launching process is gone, after the epoch's checkpoint is saved or at the start of the next epoch."""
    from transformers import TrainerCallback

    from tasks.train.ddp.rank import orphaned
    from tasks.processes import process_alive

    class StopWhenOrphaned(TrainerCallback):
        def check(self, state: Any) -> None:
            if not process_alive(launcher_pid):
                raise orphaned(launcher_pid, int(round(state.epoch or 0)))

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.check(state)

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.check(state)

    return StopWhenOrphaned()


def train_rank(folder: Path, rank: int, local_rank: int, world: int) -> None:
    import torch
    import torch.distributed as dist

    from tasks.train.checkpoint import epoch_hooks
    from tasks.train.ddp.rank import finish_rank, open_run, report_epoch, tag_process_group
    from tasks.train.ddp.launcher import INPUTS
    from tasks.train.backends.hf_trainer import train_hf
    from tasks.train.observers import EpochLog
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars at every checkpoint: noise in the step's log
    inputs = torch.load(folder / INPUTS, map_location="cpu", weights_only=False)
    config = inputs["config"]
    if inputs["backend"] == "nccl":
        torch.cuda.set_device(local_rank)  # the Trainer's "cuda" is this rank's GPU
    on_epoch_end, callbacks = None, []
    if rank == 0:  # the only rank that reports: MLflow run, a line per epoch
        logger = open_run(inputs)
        # epochs the run already holds (a resume) are not logged again; the epoch lines go to the launcher
        hooks, _ = epoch_hooks(logger, progress=EpochLog(config.epochs, config.monitor, sink=report_epoch))
        tagged = []

        def on_epoch_end(epoch: int, metrics: dict[str, float], state: dict[str, Any]) -> None:
            if not tagged:  # the Trainer has joined the process group by now
                tag_process_group(logger)
                tagged.append(True)
            hooks(epoch, metrics, state)

        callbacks.append(orphan_guard(inputs["launcher_pid"]))
    checkpoint_dir = Path(inputs["checkpoint_dir"]) if inputs["checkpoint_dir"] else None
    model = inputs["model"]
    result = train_hf(model, inputs["train"], inputs["validation"], inputs["tokenizer"], config, inputs["seed"],
                      inputs["group_by_length"], on_epoch_end, checkpoint_dir, ddp_backend=inputs["backend"],
                      show_progress=False, callbacks=callbacks, scratch_dir=folder / "trainer")
    if not dist.is_initialized() or dist.get_world_size() != world:
        raise RuntimeError(f"the Trainer did not train in the process group of {world} processes (it saw "
                           f"{dist.get_world_size() if dist.is_initialized() else 'none'})")
    finish_rank(folder, rank, model, result)


if __name__ == "__main__":
    from tasks.train.ddp.rank import run_rank

    run_rank(train_rank)
