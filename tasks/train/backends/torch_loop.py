"""`backend: torch`: a plain autograd loop over tensors batched by indexing, with early stopping and warm-up."""
from __future__ import annotations

import copy
import math
import random
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

from pydantic import Field, field_validator, model_validator

from tasks.errors import did_you_mean
from tasks.registry import LOSSES, TRAINERS
from tasks.train.common import (EpochCallback, TrainBase, TrainResult, epoch_metrics, loss_function, lr_lambda,
                                resolve_device)
from tasks.train.ddp.config import DistributedConfig, fits_device

if TYPE_CHECKING:
    from tasks.data.splits import TabularSplits
    from tasks.data.text import TextSplits


@TRAINERS.register
class TorchTrainConfig(TrainBase):
    backend: Literal["torch"]
    loss: Optional[str] = Field(None, description="a registered loss (cross_entropy, mse, or a plugin's); default: "
                                "cross_entropy (classification), mse (regression)")
    checkpoint_every: int = Field(1, ge=0, description="epochs between checkpoints (0: none); used by resume")
    checkpoint_seconds: float = Field(
        30.0, ge=0, description="at least this many seconds between checkpoints (0: every `checkpoint_every` epochs); "
        "the last epoch is always saved; a kill loses at most this much training")
    distributed: Optional[DistributedConfig] = Field(
        None, description="train with torch DDP in N processes on this machine (torchrun); batch_size is per process")

    modalities: ClassVar[frozenset[str]] = frozenset({"tabular", "text"})

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: Optional[str]) -> Optional[str]:
        known = LOSSES.names()
        if value is not None and value not in known:
            raise ValueError(f"unknown loss '{value}'{did_you_mean(value, known)} (known: {', '.join(known)})")
        return value

    @model_validator(mode="after")
    def _distributed_fits_device(self) -> "TorchTrainConfig":
        fits_device(self.distributed, self.device)
        return self

    @model_validator(mode="after")
    def _monitor_is_logged(self) -> "TorchTrainConfig":
        from tasks.evaluate.names import epoch_metric_names

        known = epoch_metric_names()
        if self.early_stopping is not None and self.early_stopping.monitor not in known:
            monitor = self.early_stopping.monitor
            raise ValueError(f"early_stopping.monitor: '{monitor}' is not a metric the torch backend logs each "
                             f"epoch{did_you_mean(monitor, known)} (one of: {', '.join(known)})")
        return self

    def trainer(self) -> "TorchTrainer":
        return TorchTrainer(self)


class TorchTrainer:
    """`backend: torch`: `train_torch` below, in this process or in DDP processes under torchrun (`distributed`)."""

    def __init__(self, config: TorchTrainConfig) -> None:
        self.config = config

    def fit(self, model: Any, data: dict[str, tuple[Any, Any]], task: str, seed: int, logger: Any,
            checkpoint: Any, resume: Optional[dict[str, Any]]) -> TrainResult:
        """Train on `data` = {split: (inputs, targets)}; checkpoints through `checkpoint`, resuming from `resume` or
        from the checkpoint's latest saved state."""
        from tasks.train.checkpoint import epoch_hooks, resume_state
        from tasks.train.observers import EpochLog

        if self.config.distributed:
            from tasks.train.ddp.launcher import train_distributed

            return train_distributed(model, data, task, self.config, seed, logger, checkpoint,
                                     resume_state(checkpoint, resume))
        on_epoch_end, resume = epoch_hooks(logger, checkpoint, resume, progress=EpochLog(self.config.epochs,
                                                                                  monitor_of(self.config)))
        return train_torch(model, data, task, self.config, seed, on_epoch_end=on_epoch_end, resume=resume)

    def fit_tabular(self, model: Any, splits: "TabularSplits", seed: int, logger: Any, checkpoint: Any,
                    resume: Optional[dict[str, Any]] = None) -> TrainResult:
        import torch

        tensors = {split: (torch.from_numpy(splits.X[split]), torch.from_numpy(splits.y[split]))
                   for split in ("train", "validation")}
        return self.fit(model, tensors, splits.task, seed, logger, checkpoint, resume)

    def fit_text(self, model: Any, splits: "TextSplits", tokenizer: Any, tokenize: Any, seed: int, logger: Any,
                 checkpoint: Any, resume: Optional[dict[str, Any]] = None) -> TrainResult:
        import torch

        from tasks.data.preprocess.tokenize import TextBatches

        data = {s: (TextBatches.of(splits, s, tokenizer, self.config.batch_size, tokenize.group_by_length and s == "train"),
                    torch.as_tensor(splits.labels(s))) for s in ("train", "validation")}
        return self.fit(model, data, "classification", seed, logger, checkpoint, resume)


def monitor_of(config: TorchTrainConfig) -> Optional[str]:
    """The metric early stopping watches (the epoch lines mark its best epoch), None without early stopping."""
    return config.early_stopping.monitor if config.early_stopping else None


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: training stops at once."""


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def forward(model: Any, inputs: Any) -> Any:
    """Model outputs (logits) for a batch: a tensor, or a dict of tensors (tokenized text) passed as keywords."""
    out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    return getattr(out, "logits", out)  # Hugging Face models return an output object


def unwrap(model: Any) -> Any:
    """The module inside a `DistributedDataParallel` wrapper (its weights carry no `module.` prefix), else `model`."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def process_group() -> Any:
    """`torch.distributed` when this process belongs to an initialised process group (a DDP worker), else None."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def predict_batches(model: Any, X: Any, batch_size: int) -> Any:
    import torch

    model.eval()
    with torch.no_grad():
        return torch.cat([forward(model, X[i:i + batch_size]) for i in range(0, len(X), batch_size)])


def train_torch(model: Any, data: dict[str, tuple[Any, Any]], task: str, config: TorchTrainConfig, seed: int,
                on_epoch_end: Optional[EpochCallback] = None, resume: Optional[dict[str, Any]] = None,
                show_progress: bool = True, sampler: Any = None) -> TrainResult:
    """Train ``model`` on ``data['train']`` = (X, y) tensors, validating on ``data['validation']`` every epoch.

    ``X`` may also be an indexable batch source (e.g. `tasks.data.preprocess.tokenize.TextBatches`) whose items are dicts of
    tensors and which may give each epoch's row order through ``epoch_order(generator)``.

    ``on_epoch_end(epoch, metrics, state)`` receives the epoch's metrics and the resumable state
    (model, optimizer, scheduler, RNG, early-stopping book-keeping); ``resume`` is such a state. Progress is the
    hook's business (`tasks.train.checkpoint.epoch_hooks` writes a line per epoch into the run's logs): the loop
    draws no bar (a live bar on the terminal overwrote those lines), and ``show_progress`` is accepted and ignored.

    Distributed (a DDP worker, see tasks/train/ddp/torch_worker.py): ``model`` may be a `DistributedDataParallel` wrapper and
    ``sampler`` a `DistributedSampler` (``set_epoch(epoch)``, then iterated) that gives this process' share of each
    epoch's rows. Under an initialised process group the train loss and sample count are summed over the
    processes, validation runs on the unwrapped model over the full validation set, and every process takes
    rank 0's epoch metrics, so early stopping decides the same everywhere. States (checkpoints, best weights)
    hold the unwrapped model's weights.
    """
    import time

    import torch

    del show_progress  # see the docstring: the epoch hook reports progress
    seed_everything(seed)
    device = resolve_device(config.device)
    model.to(device)
    core = unwrap(model)  # weights without the DDP wrapper's `module.` prefix
    group = process_group()
    X_train, y_train = (t.to(device) for t in data["train"])
    X_val, y_val = (t.to(device) for t in data["validation"])
    loss_name = config.loss or ("cross_entropy" if task == "classification" else "mse")
    criterion = loss_function(loss_name, task)
    optimizer = _make_optimizer(model, config)
    steps_per_epoch = math.ceil((len(sampler) if sampler is not None else len(X_train)) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(config.scheduler.name, config.scheduler.warmup_steps, steps_per_epoch * config.epochs))
    generator = torch.Generator().manual_seed(seed)
    stopping = config.early_stopping
    sign = -1.0 if stopping and stopping.resolved_mode == "max" else 1.0
    result = TrainResult()
    best_score, best_state, bad_epochs, start_epoch = math.inf, None, 0, 1

    if resume:
        core.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        best_score, best_state, bad_epochs = resume["best_score"], resume["best_state"], resume["bad_epochs"]
        result.history, result.best_epoch = resume["history"], resume["best_epoch"]
        start_epoch = resume["epoch"] + 1

    eval_bs = config.eval_batch_size or max(config.batch_size, 256)
    samples, train_seconds = 0, 0.0
    for epoch in range(start_epoch, config.epochs + 1):
        model.train()
        started = time.perf_counter()
        order = _epoch_order(X_train, generator, sampler, epoch).to(device)
        total_loss = torch.zeros((), device=device)
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size]
            loss = criterion(forward(model, X_train[idx]), y_train[idx])
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} at epoch {epoch}, batch {i // config.batch_size + 1}: "
                    "lower train.optimizer.lr, set train.grad_clip, or check the data for NaN/inf")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            total_loss += loss.detach() * len(idx)
        seen = torch.tensor(float(len(order)), device=device)
        if group:  # the loss over every process' rows
            totals = torch.stack([total_loss, seen])
            group.all_reduce(totals)
            total_loss, seen = totals[0], totals[1]
        train_seconds += time.perf_counter() - started
        samples += int(seen.item())
        val_out = predict_batches(core, X_val, eval_bs)
        metrics = {"train_loss": (total_loss / seen).item(), "val_loss": criterion(val_out, y_val).item(),
                   "lr": scheduler.get_last_lr()[0]}
        metrics.update({f"val_{k}": v for k, v in epoch_metrics(val_out, y_val, task).items()})
        if group:  # computed alike everywhere; rank 0's values make the early-stopping decisions agree for sure
            shared = [metrics]
            group.broadcast_object_list(shared, src=0)
            metrics = shared[0]
        result.history.append({"epoch": epoch, **metrics})
        result.epochs_run = epoch

        improved = False
        if stopping:
            if stopping.monitor not in metrics:
                raise ValueError(f"early_stopping.monitor '{stopping.monitor}' is not an epoch metric "
                                 f"(available: {', '.join(sorted(metrics))})")
            score = sign * metrics[stopping.monitor]
            if score < best_score - stopping.min_delta:
                best_score, bad_epochs, improved = score, 0, True
                result.best_epoch = epoch
                if stopping.restore_best:
                    best_state = copy.deepcopy(core.state_dict())
            else:
                bad_epochs += 1
        else:
            result.best_epoch = epoch
        if on_epoch_end:
            on_epoch_end(epoch, metrics, {
                "epoch": epoch, "model": core.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(), "best_score": best_score, "best_state": best_state,
                "bad_epochs": bad_epochs, "history": result.history, "best_epoch": result.best_epoch,
                "improved": improved})
        if stopping and bad_epochs >= stopping.patience:
            result.stopped_early = True
            break
    if on_epoch_end is not None and hasattr(on_epoch_end, "finish"):
        on_epoch_end.finish()  # the last epoch's checkpoint, before the best weights are restored
    if stopping and stopping.restore_best and best_state is not None:
        core.load_state_dict(best_state)
    result.train_samples_per_s = samples / train_seconds if train_seconds else 0.0
    model.eval()
    return result


def _epoch_order(X: Any, generator: Any, sampler: Any, epoch: int) -> Any:
    """Row ids of one epoch: the sampler's share (set to `epoch`), else the batch source's own order, else a
    permutation drawn from `generator`."""
    import torch

    if sampler is not None:
        sampler.set_epoch(epoch)
        return torch.as_tensor(list(sampler), dtype=torch.long)
    if hasattr(X, "epoch_order"):
        return X.epoch_order(generator)
    return torch.randperm(len(X), generator=generator)


def _make_optimizer(model: Any, config: TorchTrainConfig) -> Any:
    import torch

    opt = config.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    if opt.name == "sgd":
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay,
                               nesterov=opt.nesterov and opt.momentum > 0)
    cls = torch.optim.Adam if opt.name == "adam" else torch.optim.AdamW
    return cls(params, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)
