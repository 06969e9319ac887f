"""`backend: hf_trainer`: the `train:` section mapped onto `TrainingArguments`, run by the Hugging Face `Trainer`.

Metrics reach the pipeline's one MLflow run through our own `TrainerCallback` (with `report_to: none`, so the
Trainer opens no run of its own), under the torch backend's names and with step = epoch: `train_loss`, `val_loss`,
`val_accuracy`, `val_f1_macro`, `lr`. Early stopping follows the shared `early_stopping:` semantics.
"""
from __future__ import annotations

import math
import tempfile
import time
from typing import Any, Literal, Optional

from pydantic import Field, PositiveInt, model_validator

from tasks.registry import TRAINERS
from tasks.train_common import TrainBase, resolve_device
from tasks.train_torch import EpochCallback, TrainResult, epoch_metrics

EPOCH_METRICS = ("val_loss", "val_accuracy", "val_f1_macro", "train_loss")
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

    @model_validator(mode="after")
    def _known_metrics(self) -> "HFTrainerConfig":
        for key, value in (("best_model_metric", self.best_model_metric),
                           ("early_stopping.monitor", self.early_stopping.monitor if self.early_stopping else None)):
            if value is not None and value not in EPOCH_METRICS[:3]:
                raise ValueError(f"{key}: '{value}' is not a validation metric of the hf_trainer backend "
                                 f"(one of: {', '.join(EPOCH_METRICS[:3])})")
        return self

    @property
    def monitor(self) -> Optional[str]:
        """The metric that picks the best epoch (early stopping wins over best_model_metric)."""
        return self.early_stopping.monitor if self.early_stopping else self.best_model_metric


def precision_flags(config: HFTrainerConfig, device: str) -> dict[str, bool]:
    """bf16/fp16 TrainingArguments flags; mixed precision only on a CUDA device."""
    import torch

    if config.precision in ("bf16", "fp16") and device != "cuda":
        raise RuntimeError(f"train.precision '{config.precision}' needs a CUDA GPU; use precision: auto or fp32")
    choice = config.precision
    if choice == "auto":
        choice = "fp32" if device != "cuda" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    return {"bf16": choice == "bf16", "fp16": choice == "fp16"}


def training_arguments(config: HFTrainerConfig, seed: int, output_dir: str, group_by_length: bool) -> Any:
    """The `train:` section as `TrainingArguments` (evaluation and logging once per epoch, no reporting)."""
    from transformers import TrainingArguments

    device = resolve_device(config.device)
    opt = config.optimizer
    keep_best = config.monitor is not None and (config.early_stopping is None or config.early_stopping.restore_best)
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
        eval_strategy="epoch", logging_strategy="epoch", save_strategy="epoch" if keep_best else "no",
        save_total_limit=1 if keep_best else None, save_only_model=True, load_best_model_at_end=keep_best,
        metric_for_best_model=_trainer_metric(config.monitor) if keep_best else None,
        greater_is_better=(_mode(config) == "max") if keep_best else None,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        seed=seed, data_seed=seed, use_cpu=device == "cpu", report_to="none", disable_tqdm=False,
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
    return "min" if "loss" in (config.monitor or "") else "max"


def compute_metrics(prediction: Any) -> dict[str, float]:
    """Validation metrics of one evaluation, by the torch backend's function (same names, same maths)."""
    import torch

    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return epoch_metrics(torch.as_tensor(logits), torch.as_tensor(prediction.label_ids), "classification")


def epoch_callback(config: HFTrainerConfig, result: TrainResult, on_epoch_end: Optional[EpochCallback]) -> Any:
    """A `TrainerCallback` that times training epochs, reports each epoch's metrics and applies early stopping."""
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

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.train_seconds += time.perf_counter() - self.started

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


def train_hf(model: Any, train_set: Any, val_set: Any, tokenizer: Any, config: HFTrainerConfig, seed: int,
             group_by_length: bool = False, on_epoch_end: Optional[EpochCallback] = None) -> TrainResult:
    """Fine-tune `model` on tokenized `train_set` with the HF Trainer, evaluating on `val_set` every epoch."""
    from transformers import DataCollatorWithPadding, Trainer

    result = TrainResult()
    reporter = epoch_callback(config, result, on_epoch_end)
    with tempfile.TemporaryDirectory(prefix="fuseflow-hf-trainer-") as output_dir:
        args = training_arguments(config, seed, output_dir, group_by_length)
        trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
                          data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                          compute_metrics=compute_metrics, callbacks=[reporter],
                          optimizer_cls_and_kwargs=optimizer_override(config))
        trainer.train()
        trained = trainer.model
    seconds = reporter.train_seconds
    result.train_samples_per_s = len(train_set) * len(result.history) / seconds if seconds else 0.0
    trained.eval()
    if trained is not model:
        model.load_state_dict(trained.state_dict())
    return result
