"""`backend: torch`: a plain autograd loop over tensors batched by indexing, with early stopping and warm-up."""
from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

from pydantic import Field, model_validator

from tasks.distributed import DistributedConfig, fits_device
from tasks.registry import TRAINERS
from tasks.train_common import TrainBase, lr_lambda, resolve_device


@TRAINERS.register
class TorchTrainConfig(TrainBase):
    backend: Literal["torch"]
    loss: Optional[Literal["cross_entropy", "mse"]] = None  # default: cross_entropy (classification), mse (regression)
    checkpoint_every: int = 1  # epochs between checkpoints (0: none); used by resume
    distributed: Optional[DistributedConfig] = Field(
        None, description="train with torch DDP in N processes on this machine (torchrun); batch_size is per process")

    @model_validator(mode="after")
    def _distributed_fits_device(self) -> "TorchTrainConfig":
        fits_device(self.distributed, self.device)
        return self


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: training stops at once."""


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    stopped_early: bool = False
    train_samples_per_s: float = 0.0


EpochCallback = Callable[[int, dict[str, float], dict[str, Any]], None]


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def loss_function(name: str, task: str) -> Callable[[Any, Any], Any]:
    """The loss on model outputs: cross-entropy on logits, or MSE (on softmax probabilities vs one-hot for classes)."""
    import torch.nn.functional as F

    if task == "regression":
        if name != "mse":
            raise ValueError(f"loss '{name}' does not fit a regression target; use loss: mse")
        return lambda out, y: F.mse_loss(out.squeeze(-1), y)
    if name == "cross_entropy":
        return F.cross_entropy
    return lambda out, y: F.mse_loss(out.softmax(-1), F.one_hot(y, out.shape[-1]).to(out.dtype))


def epoch_metrics(outputs: Any, targets: Any, task: str) -> dict[str, float]:
    """Cheap per-epoch validation metrics (same names as the final evaluation)."""
    import torch

    if task == "classification":
        pred = outputs.argmax(-1)
        accuracy = (pred == targets).float().mean().item()
        n = outputs.shape[-1]
        f1s = []
        for c in range(n):
            tp = ((pred == c) & (targets == c)).sum().item()
            fp = ((pred == c) & (targets != c)).sum().item()
            fn = ((pred != c) & (targets == c)).sum().item()
            f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
        return {"accuracy": accuracy, "f1_macro": sum(f1s) / n}
    out = outputs.squeeze(-1)
    resid = ((out - targets) ** 2).sum().item()
    total = ((targets - targets.mean()) ** 2).sum().item() or 1.0
    return {"r2": 1 - resid / total, "mae": torch.abs(out - targets).mean().item()}


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

    ``X`` may also be an indexable batch source (e.g. `tasks.tokenize.TextBatches`) whose items are dicts of
    tensors and which may give each epoch's row order through ``epoch_order(generator)``.

    ``on_epoch_end(epoch, metrics, state)`` receives the epoch's metrics and the resumable state
    (model, optimizer, scheduler, RNG, early-stopping book-keeping); ``resume`` is such a state.

    Distributed (a DDP worker, see tasks/ddp_worker.py): ``model`` may be a `DistributedDataParallel` wrapper and
    ``sampler`` a `DistributedSampler` (``set_epoch(epoch)``, then iterated) that gives this process' share of each
    epoch's rows. Under an initialised process group the train loss and sample count are summed over the
    processes, validation runs on the unwrapped model over the full validation set, and every process takes
    rank 0's epoch metrics, so early stopping decides the same everywhere. States (checkpoints, best weights)
    hold the unwrapped model's weights.
    """
    import time

    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

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
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        epochs_bar = progress.add_task("epochs", total=config.epochs, completed=start_epoch - 1, info="")
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
            progress.update(epochs_bar, advance=1,
                            info=f"train_loss {metrics['train_loss']:.4f}  val_loss {metrics['val_loss']:.4f}")
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
