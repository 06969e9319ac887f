"""The body of a text classification pipeline: tokenizer -> data -> tokenize -> model -> train -> evaluate -> model."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks import steps_text
from tasks.caching import cached_step, report_cache_use
from tasks.checkpoint import Checkpointer
from tasks.errors import ConfigError
from tasks.pipeline_config import PipelineSpec
from tasks.tokenize import TokenizeConfig
from tasks.tracking import RunLogger


def tokenize_config(spec: PipelineSpec) -> TokenizeConfig:
    """The pipeline's `tokenize` step (defaults when `preprocess` is empty); other steps do not apply to text."""
    steps = list(spec.preprocess)
    for i, step in enumerate(steps):
        if not isinstance(step, TokenizeConfig):
            raise ConfigError.single(f"preprocess step '{step.name}' does not apply to text data (text pipelines "
                                     "take one `- tokenize: {max_length: ...}` step)", ("preprocess", i))
    if len(steps) > 1:
        raise ConfigError.single("give one `tokenize` step", ("preprocess", 1))
    return steps[0] if steps else TokenizeConfig()


def check_model(spec: PipelineSpec) -> None:
    if not hasattr(spec.model, "build_text"):
        raise ConfigError.single(f"model type '{spec.model.type}' does not take text; use "
                                 "`type: hf_sequence_classification`", ("model", "type"))


def run_text(spec: PipelineSpec, logger: RunLogger, base_dir: Path) -> dict[str, Any]:
    """Run every step into `logger`'s MLflow run; returns run id, model URI, test metrics and task."""
    tokenize = tokenize_config(spec)
    check_model(spec)
    tokenizer = steps_text.load_tokenizer(spec.model, base_dir)
    raw = steps_text.load_data(spec.data, spec.seed, base_dir)
    steps_text.log_dataset(raw, logger)
    splits = steps_text.tokenize(raw, tokenizer, tokenize, logger)
    model = steps_text.build_model(spec.model, raw.classes, tokenizer, spec.seed, base_dir)
    reuse: dict[str, Any] = {}
    checkpoint = Checkpointer(logger, getattr(spec.train, "checkpoint_every", 1))
    model, result = cached_step(steps_text.train, reuse)(model, splits, tokenizer, spec.train, tokenize, spec.seed,
                                                         logger, checkpoint=checkpoint)
    report_cache_use(logger, reuse, result)
    eval_batch_size = spec.train.eval_batch_size or max(spec.train.batch_size, 64)
    report = steps_text.evaluate(model, splits, tokenizer, spec.evaluate, result, eval_batch_size, logger)
    source = spec.model.pretrained or f"a fresh {spec.model.config['model_type']} model"
    model_uri = steps_text.log_model(model, tokenizer, raw, logger, source)
    return {"run_id": logger.run_id, "model_uri": model_uri, "metrics": report["metrics"], "task": "classification"}
