"""The Prefect tasks of a text classification pipeline: thin wrappers over the text step modules, testable via `.fn`.

Training takes the step cache policy of tasks/cache/policy.py (its key: the initial weights, the texts' digest, the
tokenizer, the configs, the code and the library versions); the others take none (`NO_CACHE`), and the
expensive part that repeats before training, tokenization, is cached by `datasets`' fingerprints (see
tasks/data/preprocess/tokenize.py).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from tasks.steps.step_task import step
from prefect.cache_policies import NO_CACHE

from tasks.cache.policy import StepCachePolicy
from tasks.data.text import TextSplits
from tasks.tracking import tags
from tasks.tracking.logger import RunLogger

log = logging.getLogger("fuseflow")


@step(name="load-tokenizer", cache_policy=NO_CACHE)
def load_tokenizer(model_config: Any, base_dir: Path) -> Any:
    """The model's fast tokenizer; loaded first so that a missing model fails before any data work."""
    return model_config.load_tokenizer(base_dir)


@step(name="load-data", cache_policy=NO_CACHE)
def load_data(config: Any, seed: int, base_dir: Path) -> TextSplits:
    """Load the texts through `datasets`, map labels to ids (sorted) and split (seeded, stratified)."""
    from tasks.data.text import load_text

    return load_text(config, seed, base_dir)


@step(name="log-dataset", cache_policy=NO_CACHE)
def log_dataset(splits: TextSplits, logger: RunLogger) -> str:
    """The splits as the run's dataset inputs (context `training` with the digest of all splits, `validation` and
    `test` with their own content digests), and the label map as param + artifact."""
    import json

    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource

    from tasks.data.text import describe_labels

    source = CodeDatasetSource(tags={tags.DATASET_SOURCE: splits.source})
    for split, context in (("train", "training"), ("validation", "validation"), ("test", "test")):
        if split not in splits.datasets or (split != "train" and not len(splits.datasets[split])):
            continue
        frame = splits.datasets[split].to_pandas()
        digest = splits.digest if split == "train" else splits.split_digests.get(split) or f"{splits.digest}-{split}"
        with warnings.catch_warnings():  # MLflow's hint about integer columns and missing values: labels never miss
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(frame, source=source, name=splits.name, targets="label", digest=digest)
            logger.log_dataset(dataset, context)
    labels = describe_labels(splits)
    logger.log_params({"data.id2label": json.dumps(labels["id2label"]), "data.num_classes": len(splits.classes)})
    logger.log_metrics({f"data_{split}_size": n for split, n in splits.sizes().items()})
    logger.log_dict(labels, "label_map.json")
    return splits.digest


@step(name="tokenize", cache_policy=NO_CACHE)
def tokenize(splits: TextSplits, tokenizer: Any, config: Any, logger: RunLogger | None) -> TextSplits:
    """Tokenize every split (or reuse the tokens cached by an earlier run); the cache use is tagged on the run."""
    import json

    from tasks.data.preprocess.tokenize import tokenize_splits

    tokenized = tokenize_splits(splits, tokenizer, config)
    log.info("tokenize: %s", ", ".join(f"{s} {state}" for s, state in tokenized.tokenize_cache.items()))
    if logger:
        logger.set_tags({tags.TOKENIZE_CACHE: json.dumps(tokenized.tokenize_cache)})
    return tokenized


@step(name="build-model", cache_policy=NO_CACHE)
def build_model(model_config: Any, classes: list[str], tokenizer: Any, seed: int, base_dir: Path) -> Any:
    """The transformer with a classification head over `classes`, seeded."""
    from tasks.train.common import seeded_init

    with seeded_init(seed):
        return model_config.build_text(classes, tokenizer, base_dir)


@step(name="train", cache_policy=StepCachePolicy())
def train(model: Any, splits: TextSplits, tokenizer: Any, train_config: Any, tokenize_config: Any, seed: int,
          logger: RunLogger | None, resume: dict | None = None, checkpoint: Any = None) -> tuple[Any, Any]:
    """Fine-tune with the configured backend; per-epoch metrics go to the run under the same names for both.

    The backend's trainer (`train_config.trainer()`) does the work. `checkpoint` is the run's
    `tasks.train.checkpoint.Checkpointer`: the torch backend saves its state there and resumes from it as the tabular
    train step does; the hf_trainer backend keeps the Trainer's own checkpoint folders in
    `tasks.train.checkpoint.trainer_folder(checkpoint)` and resumes from the newest one."""
    from tasks.train.checkpoint import finish_training

    result = train_config.trainer().fit_text(model, splits, tokenizer, tokenize_config, seed, logger, checkpoint, resume)
    finish_training(result, logger, checkpoint)
    return model, result


def class_probabilities(model: Any, splits: TextSplits, split: str, tokenizer: Any, batch_size: int) -> Any:
    """Softmax outputs of the model for one split, in row order (numpy, n x classes)."""
    from tasks.data.preprocess.tokenize import TextBatches
    from tasks.train.backends.torch_loop import predict_batches

    device = next(model.parameters()).device
    data = TextBatches.of(splits, split, tokenizer, batch_size).to(device)
    return predict_batches(model, data, batch_size).softmax(-1).float().cpu().numpy()


@step(name="evaluate", cache_policy=NO_CACHE)
def evaluate(model: Any, splits: TextSplits, tokenizer: Any, config: Any, train_result: Any, eval_batch_size: int,
             logger: RunLogger | None) -> dict[str, Any]:
    """Test metrics, per-class report with the class names, confusion matrix and learning curve."""
    from tasks.evaluate import report as ev

    y_test = splits.labels("test")
    proba = class_probabilities(model, splits, "test", tokenizer, eval_batch_size)
    metrics = ev.classification_metrics(y_test, proba, config.for_task("classification"))
    report: dict[str, Any] = {"task": "classification", "sizes": splits.sizes(), "data_digest": splits.digest,
                              **ev.classification_report(y_test, proba, splits.classes)}
    return ev.record_evaluation(report, metrics, train_result, config, logger)


@step(name="log-model", cache_policy=NO_CACHE)
def log_model(model: Any, tokenizer: Any, raw: TextSplits, logger: RunLogger, source: str) -> str:
    """The model and tokenizer as an MLflow transformers model (text-classification), logged as the run's LoggedModel
    `model`; returns `runs:/<run_id>/model`."""
    from tasks.export.hf_model import log_text_model

    column = raw.text_columns[0]
    examples = [str(t) for t in raw.datasets["test"][column][:2]]
    return log_text_model(model, tokenizer, logger, examples, source)
