"""The Prefect tasks of a tabular training pipeline: thin wrappers over the step modules, testable via `.fn`."""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

from tasks.steps.step_task import step
from prefect.cache_policies import NO_CACHE

from tasks.cache.policy import NOT_KEYED, StepCachePolicy
from tasks.data.splits import TabularSplits
from tasks.tracking import tags
from tasks.tracking.logger import RunLogger

#: split -> the MLflow dataset context it is logged with (the training split's digest covers all splits)
SPLIT_CONTEXTS = {"train": "training", "validation": "validation", "test": "test"}


@step(name="load-data", cache_policy=StepCachePolicy(exclude=NOT_KEYED + ("base_dir",)))
def load_data(config: Any, seed: int, base_dir: Path, loss: str | None = None) -> TabularSplits:
    """Read the table and split it (seeded, stratified for classification)."""
    from tasks.data.tabular import load_tabular

    return load_tabular(config, seed, base_dir, loss)


@step(name="preprocess", cache_policy=StepCachePolicy())
def preprocess(steps: list[Any], splits: TabularSplits, target_scaling: str) -> tuple[TabularSplits, Any]:
    """Fit the preprocess steps on train and transform every split."""
    from tasks.data.scaling import fit_preprocess

    return fit_preprocess(steps, splits, target_scaling)


@step(name="build-model", cache_policy=NO_CACHE)
def build_model(model_config: Any, in_features: int, out_features: int, seed: int,
                embeddings: list[dict[str, int]] | None = None) -> Any:
    """Instantiate the network with a seeded initialisation (behind an embedding front end for category codes)."""
    from tasks.train.common import seeded_init
    from tasks.train.embedded import build_network

    with seeded_init(seed):
        return build_network(model_config.build, in_features, out_features, embeddings or ())


@step(name="train", cache_policy=StepCachePolicy())
def train(model: Any, splits: TabularSplits, train_config: Any, seed: int, logger: RunLogger | None,
          resume: dict | None = None, checkpoint: Any = None) -> tuple[Any, Any]:
    """Run the training backend; per-epoch metrics go to MLflow in one batch per epoch.

    `checkpoint(epoch, state)` saves the resumable state; when it has a saved one (`checkpoint.latest()`: a Prefect
    retry, or `--resume` of an unfinished run) and no `resume` state is given, training continues from it.
    The backend's trainer (`train_config.trainer()`) does the work, in DDP processes under torchrun with
    `train.distributed` (tasks/train/ddp/)."""
    from tasks.train.checkpoint import finish_training

    result = train_config.trainer().fit_tabular(model, splits, seed, logger, checkpoint, resume)
    finish_training(result, logger, checkpoint)
    return model, result


def network_outputs(model: Any, splits: TabularSplits, split: str, scaling: Any) -> Any:
    """Class probabilities (classification) or predictions in target units (regression) of one split."""
    import torch

    from tasks.train.backends.torch_loop import predict_batches

    out = predict_batches(model.to("cpu"), torch.from_numpy(splits.X[split]), 1024)
    if splits.task == "classification":
        return out.softmax(-1).numpy()
    return out.squeeze(-1).numpy() * scaling.target_scale + scaling.target_mean


@step(name="evaluate", cache_policy=NO_CACHE)
def evaluate(model: Any, splits: TabularSplits, scaling: Any, config: Any, train_result: Any,
             logger: RunLogger | None) -> dict[str, Any]:
    """Test metrics, per-class report and plots; logged to the run and returned."""
    from tasks.evaluate import report as ev

    names = config.for_task(splits.task)
    y_test = splits.y["test"]
    outputs = network_outputs(model, splits, "test", scaling)
    report: dict[str, Any] = {"task": splits.task, "sizes": splits.sizes(), "data_digest": splits.digest}
    if splits.task == "classification":
        metrics = ev.classification_metrics(y_test, outputs, names)
        report.update(ev.classification_report(y_test, outputs, [str(c) for c in splits.classes]))
    else:
        y_true = y_test * scaling.target_scale + scaling.target_mean
        metrics = ev.regression_metrics(y_true, outputs, names)
    return ev.record_evaluation(report, metrics, train_result, config, logger)


@step(name="log-model", cache_policy=NO_CACHE)
def log_model(model: Any, model_config: Any, splits: TabularSplits, scaling: Any, logger: RunLogger) -> str:
    """Save the model (pyfunc: safetensors weights + JSON spec) as the run's LoggedModel `model`, the final
    metrics linked to it; returns `runs:/<run_id>/model`, which MLflow resolves to that model."""
    from tasks.export.torch_model import save_tabular_model
    from tasks.tracking.logged_model import log_model_folder, run_model_uri

    with tempfile.TemporaryDirectory(prefix="fuseflow-model-") as tmp:
        path = save_tabular_model(model, model_config, splits, scaling, Path(tmp) / "model")
        log_model_folder(logger.client, logger.run_id, path, model_type=f"tabular/{getattr(model_config, 'type', 'model')}")
    return run_model_uri(logger.run_id)


def split_digest(splits: TabularSplits, split: str) -> str:
    """Content fingerprint of one split (its encoded features and labels)."""
    import hashlib

    import numpy as np

    h = hashlib.sha256(split.encode())
    h.update(np.ascontiguousarray(splits.X[split]).tobytes())
    h.update(np.ascontiguousarray(splits.y[split]).tobytes())
    h.update(repr((splits.feature_names, [str(c) for c in splits.classes])).encode())
    return h.hexdigest()[:16]


def split_frame(splits: TabularSplits, split: str) -> Any:
    """One split's rows as the dataset MLflow records: the raw feature columns (or the features) and the label."""
    import pandas as pd

    if splits.raw:
        frame = splits.raw[split].copy()
    else:
        frame = pd.DataFrame(splits.X[split], columns=splits.feature_names)
    labels = splits.y[split]
    if splits.classes:
        labels = pd.Series([splits.classes[i] for i in labels]).to_numpy()
    frame["label" if "label" not in frame.columns else "label_"] = labels
    return frame


@step(name="log-dataset", cache_policy=NO_CACHE)
def log_dataset(splits: TabularSplits, logger: RunLogger) -> str:
    """Record the splits' raw rows as the run's dataset inputs (context `training`, with the digest of all splits;
    `validation` and `test`, each with its own), and the feature table (types, missing cells, strategies) as a
    table, params and a Prefect artifact."""
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource

    from tasks.data.features.report import log_feature_report

    log_feature_report(splits.report, logger)
    if splits.raw:
        from tasks.data.features.profile import profile_frame

        inputs = [i["name"] for i in (splits.features or {}).get("inputs", [])] or list(splits.raw["train"].columns)
        # what a scoring run's drift compares with: the model's inputs as training saw them
        logger.log_dict(profile_frame(splits.raw["train"][inputs]), "features/profile.json")
    source = CodeDatasetSource(tags={tags.DATASET_SOURCE: splits.source})  # sklearn:/hub: names have no resolver
    for split, context in SPLIT_CONTEXTS.items():
        if split != "train" and not len(splits.y.get(split, ())):
            continue
        frame = split_frame(splits, split)
        digest = splits.digest if split == "train" else split_digest(splits, split)
        with warnings.catch_warnings():  # MLflow infers the schema here and when the input is logged
            warnings.filterwarnings("ignore", message=".*Integer columns.*")  # class ids are integers by design
            dataset = mlflow.data.from_pandas(frame, source=source, name=splits.name, targets=frame.columns[-1],
                                              digest=digest)
            logger.log_dataset(dataset, context)
    return splits.digest
