"""The body of a text classification pipeline: tokenizer -> data -> tokenize -> model -> train -> evaluate -> model."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from flows.bodies.data import PHASE, LoadedData, splits_in_run
from tasks.steps import text as steps_text
from tasks.cache.policy import cached_step, report_cache_use
from tasks.train.checkpoint import Checkpointer
from tasks.pipeline.resolved import ResolvedPipeline
from tasks.pipeline.summary import RunSummary
from tasks.pipeline.spec import PipelineSpec
from tasks.data.preprocess.tokenize import TokenizeConfig
from tasks.tracking.logger import RunLogger
from tasks.tracking.system_metrics import system_metrics


def tokenize_config(spec: PipelineSpec) -> TokenizeConfig:
    """The pipeline's `tokenize` step, or the default one when `preprocess` is empty (validation has made sure
    that a text pipeline's steps are at most one `tokenize`)."""
    return next((s for s in spec.preprocess if isinstance(s, TokenizeConfig)), TokenizeConfig())


def run_text(pipeline: ResolvedPipeline, logger: RunLogger, base_dir: Path,
             data: Optional[LoadedData] = None) -> RunSummary:
    """Run every step into `logger`'s MLflow run, from `data` when it was loaded before the run opened; returns run
    id, model URI, test metrics and task."""
    spec = pipeline.spec
    tokenize = tokenize_config(spec)
    raw, reuse = splits_in_run(data, pipeline, logger, base_dir)
    with logger.phase(PHASE):
        tokenizer = steps_text.load_tokenizer(spec.model, base_dir)
        steps_text.log_dataset(raw, logger)
    with logger.phase("tokenize"):
        splits = steps_text.tokenize(raw, tokenizer, tokenize, logger)
    with logger.phase("build-model"):
        model = steps_text.build_model(spec.model, raw.classes, tokenizer, spec.seed, base_dir)
    checkpoint = Checkpointer(logger, getattr(spec.train, "checkpoint_every", 1),
                              min_seconds=getattr(spec.train, "checkpoint_seconds", 0.0))
    with logger.phase("train"), system_metrics(logger):
        model, result = cached_step(steps_text.train, reuse)(model, splits, tokenizer, spec.train, tokenize,
                                                             spec.seed, logger, checkpoint=checkpoint)
        report_cache_use(logger, reuse, result)
    eval_batch_size = spec.train.eval_batch_size or max(spec.train.batch_size, 64)
    with logger.phase("evaluate"):
        report = steps_text.evaluate(model, splits, tokenizer, spec.evaluate, result, eval_batch_size, logger)
    source = spec.model.pretrained or f"a fresh {spec.model.config['model_type']} model"
    with logger.phase("log-model"):
        model_uri = steps_text.log_model(model, tokenizer, raw, logger, source)
    return RunSummary(logger.run_id, model_uri, report["metrics"], "classification")
