"""`backend: hf_trainer`: the `train:` section mapped onto `TrainingArguments`, run by the Hugging Face `Trainer`.

Metrics reach the pipeline's one MLflow run through our own `TrainerCallback` (with `report_to: none`, so the
Trainer opens no run of its own), under the torch backend's names and with step = epoch: `train_loss`, `val_loss`,
`val_accuracy`, `val_f1_macro`, `lr`. Early stopping follows the shared `early_stopping:` semantics.

Checkpoints: with a `checkpoint_dir` (the pipeline gives one tied to its MLflow run) and `checkpoint_every: N`, the
Trainer saves its own full checkpoint (weights, optimizer, scheduler, RNG, trainer state) every N epochs, the
newest two kept (and the best one while `best_model_metric` / early stopping keeps the best weights), each with
`fuseflow.json` (our epoch history and early-stopping book-keeping), written last. When the folder holds a complete
checkpoint, training resumes from it (`resume_from_checkpoint`): finished epochs are neither rerun nor re-logged.

`distributed: {nproc_per_node: N, backend: gloo|nccl}`: the same `train_hf` in N processes under torchrun
(`tasks.train.ddp.launcher.train_hf_distributed`, tasks/train/ddp/hf_worker.py); the Trainer joins the process group itself
(`ddp_backend`), rank 0 alone logs and checkpoints, and every rank resumes from the same checkpoint folder.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional, Sequence

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from tasks.evaluate.names import EPOCH_METRICS, direction
from tasks.registry import TRAINERS
from tasks.train.common import EpochCallback, TrainBase, TrainResult, epoch_metrics, resolve_device
from tasks.train.ddp.config import DistributedConfig, fits_device

if TYPE_CHECKING:
    from tasks.data.text import TextSplits

log = logging.getLogger("fuseflow")

PROGRESS_FILE = "fuseflow.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
SCHEDULERS = {"none": "constant", "linear": "linear", "cosine": "cosine"}


@TRAINERS.register
class HFTrainerConfig(TrainBase):
    """Keys of every backend plus the Trainer's own: gradient accumulation, best model at end, precision."""

    backend: Literal["hf_trainer"]
    gradient_accumulation_steps: PositiveInt = 1
    best_model_metric: Optional[str] = Field(
        None, description="keep the weights of the epoch best on this metric (e.g. val_f1_macro, val_loss)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 (or fp16) on a GPU, fp32 on a CPU; bf16/fp16 need a GPU")
    checkpoint_every: NonNegativeInt = Field(
        1, description="epochs between the Trainer's checkpoints (0: none); a `--resume` continues from the newest")

    distributed: Optional[DistributedConfig] = Field(
        None, description="the Trainer under torchrun with DDP in N processes on this machine; batch_size is per "
                          "process")

    modalities: ClassVar[frozenset[str]] = frozenset({"text"})

    @model_validator(mode="after")
    def _distributed_fits_device(self) -> "HFTrainerConfig":
        fits_device(self.distributed, self.device)
        return self

    @model_validator(mode="after")
    def _known_metrics(self) -> "HFTrainerConfig":
        for key, value in (("best_model_metric", self.best_model_metric),
                           ("early_stopping.monitor", self.early_stopping.monitor if self.early_stopping else None)):
            if value is not None and value not in validation_metrics():
                raise ValueError(f"{key}: '{value}' is not a validation metric of the hf_trainer backend "
                                 f"(one of: {', '.join(validation_metrics())})")
        return self

    @property
    def monitor(self) -> Optional[str]:
        """The metric that picks the best epoch (early stopping wins over best_model_metric)."""
        return self.early_stopping.monitor if self.early_stopping else self.best_model_metric

    def trainer(self) -> "HFTrainer":
        return HFTrainer(self)


def validation_metrics() -> list[str]:
    """The validation metrics the Trainer logs each epoch (what early stopping and best-model choice can watch)."""
    return [name for name in EPOCH_METRICS["classification"] if name.startswith("val_")]


class HFTrainer:
    """`backend: hf_trainer`: the Hugging Face Trainer (`train_hf` below), in this process or under torchrun."""

    def __init__(self, config: HFTrainerConfig) -> None:
        self.config = config

    def fit_text(self, model: Any, splits: "TextSplits", tokenizer: Any, tokenize: Any, seed: int, logger: Any,
                 checkpoint: Any, resume: Optional[dict[str, Any]] = None) -> TrainResult:
        """The Trainer keeps its own checkpoint folders in `trainer_folder(checkpoint)` and resumes from the newest."""
        from tasks.train.checkpoint import epoch_hooks, trainer_folder
        from tasks.train.observers import EpochLog

        columns = ["input_ids", "attention_mask", "token_type_ids", "label"]
        keep = {s: splits.datasets[s].select_columns([c for c in columns if c in splits.datasets[s].column_names])
                for s in ("train", "validation")}
        if self.config.distributed:  # the Trainer in DDP processes under torchrun (tasks/train/ddp/hf_worker.py)
            from tasks.train.ddp.launcher import train_hf_distributed

            return train_hf_distributed(model, keep["train"], keep["validation"], tokenizer, self.config, seed,
                                        tokenize.group_by_length, logger, trainer_folder(checkpoint))
        # the Trainer saves its own checkpoints; a line per epoch goes to the run's logs
        on_epoch_end, _ = epoch_hooks(logger, progress=EpochLog(self.config.epochs, self.config.monitor))
        return train_hf(model, keep["train"], keep["validation"], tokenizer, self.config, seed,
                        tokenize.group_by_length, on_epoch_end, checkpoint_dir=trainer_folder(checkpoint))


def precision_flags(config: HFTrainerConfig, device: str) -> dict[str, bool]:
    """bf16/fp16 TrainingArguments flags; mixed precision only on a CUDA device."""
    import torch

    if config.precision in ("bf16", "fp16") and device != "cuda":
        raise RuntimeError(f"train.precision '{config.precision}' needs a CUDA GPU; use precision: auto or fp32")
    choice = config.precision
    if choice == "auto":
        choice = "fp32" if device != "cuda" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    return {"bf16": choice == "bf16", "fp16": choice == "fp16"}


def keeps_best(config: HFTrainerConfig) -> bool:
    return config.monitor is not None and (config.early_stopping is None or config.early_stopping.restore_best)


def training_arguments(config: HFTrainerConfig, seed: int, output_dir: str, group_by_length: bool,
                       checkpointing: bool = False, ddp_backend: Optional[str] = None,
                       show_progress: bool = True) -> Any:
    """The `train:` section as `TrainingArguments` (evaluation and logging once per epoch, no reporting).

    `checkpointing`: full checkpoints (resumable) every epoch, the newest two kept; the callback of
    `epoch_callback` skips the epochs between `checkpoint_every`. `ddp_backend`: the process-group backend of a
    process started by torchrun (the Trainer joins the group from LOCAL_RANK/WORLD_SIZE and wraps the model in DDP)."""
    from transformers import TrainingArguments

    device = resolve_device(config.device)
    opt = config.optimizer
    keep_best = keeps_best(config)
    scheduler = SCHEDULERS[config.scheduler.name]
    if scheduler == "constant" and config.scheduler.warmup_steps:
        scheduler = "constant_with_warmup"
    return TrainingArguments(
        output_dir=output_dir, num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size or config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=opt.lr, weight_decay=opt.weight_decay, adam_beta1=opt.betas[0], adam_beta2=opt.betas[1],
        adam_epsilon=opt.eps, optim="adamw_torch", lr_scheduler_type=scheduler,
        warmup_steps=config.scheduler.warmup_steps, max_grad_norm=config.grad_clip or 0.0,
        eval_strategy="epoch", logging_strategy="epoch", save_strategy="epoch" if keep_best or checkpointing else "no",
        save_total_limit=2 if checkpointing else (1 if keep_best else None), save_only_model=not checkpointing,
        load_best_model_at_end=keep_best,
        metric_for_best_model=_trainer_metric(config.monitor) if keep_best else None,
        greater_is_better=(_mode(config) == "max") if keep_best else None,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        seed=seed, data_seed=seed, use_cpu=device == "cpu", report_to="none", disable_tqdm=not show_progress,
        # the Trainer would multiply each rank's loss by the world size, expecting a model loss divided by the
        # tokens of every rank (`num_items_in_batch`); sequence classification averages over its own batch, so the
        # loss (logged and differentiated) came out world-size times too large under DDP
        ddp_backend=ddp_backend, average_tokens_across_devices=False,
        dataloader_pin_memory=device == "cuda", log_level="warning", **precision_flags(config, device))


def optimizer_override(config: HFTrainerConfig) -> Optional[tuple[Any, dict[str, Any]]]:
    """sgd and adam as `optimizer_cls_and_kwargs` (the Trainer's own param groups keep weight decay off biases)."""
    import torch

    opt = config.optimizer
    if opt.name == "sgd":
        return torch.optim.SGD, {"lr": opt.lr, "momentum": opt.momentum, "nesterov": opt.nesterov and opt.momentum > 0}
    if opt.name == "adam":
        return torch.optim.Adam, {"lr": opt.lr, "betas": opt.betas, "eps": opt.eps}
    return None


def _trainer_metric(name: Optional[str]) -> Optional[str]:
    """`val_f1_macro` -> `f1_macro` (the Trainer prefixes `eval_`); `val_loss` -> `loss`."""
    return None if name is None else name.removeprefix("val_")


def _mode(config: HFTrainerConfig) -> str:
    if config.early_stopping:
        return config.early_stopping.resolved_mode
    return direction(config.monitor) if config.monitor else "max"


def compute_metrics(prediction: Any) -> dict[str, float]:
    """Validation metrics of one evaluation, by the torch backend's function (same names, same maths)."""
    import torch

    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return epoch_metrics(torch.as_tensor(logits), torch.as_tensor(prediction.label_ids), "classification")


def save_progress(folder: Path, progress: dict[str, Any]) -> None:
    """Write `fuseflow.json` into a Trainer checkpoint folder (under a temporary name renamed into place): its
    presence marks the checkpoint complete."""
    tmp = folder / f".{PROGRESS_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(progress), encoding="utf-8")
    os.replace(tmp, folder / PROGRESS_FILE)


def latest_checkpoint(folder: Optional[Path]) -> Optional[Path]:
    """The newest complete Trainer checkpoint folder (`checkpoint-<step>` with `fuseflow.json`) in `folder`."""
    if folder is None or not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name))
             and (p / PROGRESS_FILE).is_file() and (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def epoch_callback(config: HFTrainerConfig, result: TrainResult, on_epoch_end: Optional[EpochCallback],
                   checkpointing: bool = False) -> Any:
    """A `TrainerCallback` that times training epochs, reports each epoch's metrics and applies early stopping;
    with `checkpointing`, it keeps the Trainer's checkpoints to every `checkpoint_every` epochs and adds our
    book-keeping to each (`restore` reads it back)."""
    from transformers import TrainerCallback

    stopping = config.early_stopping
    sign = -1.0 if _mode(config) == "max" else 1.0

    class EpochReporter(TrainerCallback):
        def __init__(self) -> None:
            self.started = 0.0
            self.train_seconds = 0.0
            self.pending: dict[str, float] = {}
            self.best = math.inf
            self.bad_epochs = 0
            self.epochs_timed = 0

        def restore(self, checkpoint: Path) -> None:
            progress = json.loads((checkpoint / PROGRESS_FILE).read_text(encoding="utf-8"))
            result.history[:] = progress["history"]
            result.best_epoch, result.epochs_run = progress["best_epoch"], progress["epochs_run"]
            self.best, self.bad_epochs = float(progress["best"]), progress["bad_epochs"]

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.train_seconds += time.perf_counter() - self.started
            self.epochs_timed += 1
            epoch = int(round(state.epoch or 0))
            if checkpointing and not keeps_best(config) and epoch % config.checkpoint_every:
                control.should_save = False

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if checkpointing and state.is_world_process_zero:  # under DDP: the rank that wrote the checkpoint
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                save_progress(folder, {"epoch": result.epochs_run, "history": result.history,
                                       "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                                       "best": self.best, "bad_epochs": self.bad_epochs})

        def on_log(self, args: Any, state: Any, control: Any, logs: Optional[dict] = None, **kwargs: Any) -> None:
            logs = logs or {}
            if "loss" in logs:
                self.pending["train_loss"] = float(logs["loss"])
            if "learning_rate" in logs:
                self.pending["lr"] = float(logs["learning_rate"])

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Optional[dict] = None, **kwargs: Any) -> None:
            epoch = int(round(state.epoch or 0))
            values = {f"val_{k.removeprefix('eval_')}": float(v) for k, v in (metrics or {}).items()
                      if k in ("eval_loss", "eval_accuracy", "eval_f1_macro")}
            row = {**self.pending, **values}
            self.pending = {}
            result.history.append({"epoch": epoch, **row})
            result.epochs_run = epoch
            monitor = config.monitor
            if monitor and monitor in row:
                score = sign * row[monitor]
                if score < self.best - (stopping.min_delta if stopping else 0.0):
                    self.best, self.bad_epochs, result.best_epoch = score, 0, epoch
                else:
                    self.bad_epochs += 1
                if stopping and self.bad_epochs >= stopping.patience and epoch < config.epochs:
                    result.stopped_early = True
                    control.should_training_stop = True
            else:
                result.best_epoch = epoch
            if on_epoch_end:
                on_epoch_end(epoch, row, {"epoch": epoch, "history": result.history, "best_epoch": result.best_epoch})

    return EpochReporter()


def quiet_log_printing(trainer: Any) -> None:
    """Stop the Trainer printing its log dicts (`{'loss': ..., 'epoch': 1.0}`) on the console each epoch: the epoch
    hook's line says the same in the run's logs. The step bar (tqdm) stays where it is shown."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class StepBar(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Optional[dict] = None, **kwargs: Any) -> None:
            return None

    trainer.remove_callback(PrinterCallback)
    if any(type(c) is ProgressCallback for c in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(StepBar)


def train_hf(model: Any, train_set: Any, val_set: Any, tokenizer: Any, config: HFTrainerConfig, seed: int,
             group_by_length: bool = False, on_epoch_end: Optional[EpochCallback] = None,
             checkpoint_dir: Optional[Path] = None, ddp_backend: Optional[str] = None, show_progress: bool = True,
             callbacks: Sequence[Any] = (), scratch_dir: Optional[Path] = None) -> TrainResult:
    """Fine-tune `model` on tokenized `train_set` with the HF Trainer, evaluating on `val_set` every epoch.

    With `checkpoint_dir` and `checkpoint_every` > 0, checkpoints go there and training resumes from the newest.
    The single process and every DDP rank (tasks/train/ddp/hf_worker.py, with `ddp_backend`) build the Trainer here; under
    DDP the validation metrics (gathered from every rank) and so early stopping agree across ranks, and only the
    first rank saves checkpoints. `callbacks`: more `TrainerCallback`s, after the epoch reporter. `scratch_dir`: the
    Trainer's folder without `checkpoint_dir` (the best epoch's weights), a new temporary one by default; DDP ranks
    must share one, or the ranks other than the first find no best weights to restore and end on the last epoch's."""
    from transformers import DataCollatorWithPadding, Trainer

    result = TrainResult()
    checkpointing = checkpoint_dir is not None and config.checkpoint_every > 0
    reporter = epoch_callback(config, result, on_epoch_end, checkpointing)
    scratch = (tempfile.TemporaryDirectory(prefix="fuseflow-hf-trainer-") if scratch_dir is None
               else nullcontext(str(scratch_dir)))
    with scratch as tmp_dir:
        output_dir = Path(checkpoint_dir) if checkpointing else Path(tmp_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        args = training_arguments(config, seed, str(output_dir), group_by_length, checkpointing, ddp_backend,
                                  show_progress)
        trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
                          data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                          compute_metrics=compute_metrics, callbacks=[reporter, *callbacks],
                          optimizer_cls_and_kwargs=optimizer_override(config))
        quiet_log_printing(trainer)
        resume = latest_checkpoint(output_dir) if checkpointing else None
        if resume is not None:
            log.info("resuming training from the Trainer checkpoint %s (epoch %s)", resume.name,
                     json.loads((resume / PROGRESS_FILE).read_text(encoding="utf-8"))["epoch"])
            reporter.restore(resume)
        trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
        trained = trainer.model
    seconds = reporter.train_seconds
    result.train_samples_per_s = len(train_set) * reporter.epochs_timed / seconds if seconds else 0.0
    trained.eval()
    if trained is not model:
        model.load_state_dict(trained.state_dict())
    return result
