"""Log a fine-tuned text classifier as an MLflow `transformers` model (model + tokenizer, text-classification).

`mlflow.pyfunc.load_model(uri).predict(["great phone", "awful"])` then returns a frame of `label` (the class
names of the data) and `score`. Saving touches no network: the Hugging Face Hub client is held offline while
MLflow writes the model (it would otherwise look up a model card and a license), and pip requirements are given
explicitly instead of being inferred.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence

from tasks.tracking import tags

TASK = "text-classification"


@contextlib.contextmanager
def hub_client_offline() -> Iterator[None]:
    """Hold the Hugging Face Hub client offline (every Hub request raises at once) inside the block."""
    import huggingface_hub.constants as hub_constants

    saved = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model (inferring them would load the model in a subprocess)."""
    import mlflow
    import tokenizers
    import torch
    import transformers

    return [f"mlflow=={mlflow.__version__}", f"transformers=={transformers.__version__}",
            f"tokenizers=={tokenizers.__version__}", f"torch=={torch.__version__.split('+')[0]}"]


def model_card(classes: Sequence[str], source: str) -> Any:
    """A local model card (so MLflow does not fetch one from the Hub)."""
    from huggingface_hub import ModelCard

    return ModelCard(f"---\npipeline_tag: {TASK}\n---\n# fuseflow text classifier\n\nFine-tuned from `{source}` "
                     f"by fuseflow. Classes: {', '.join(map(str, classes))}.\n")


def save_text_model(model: Any, tokenizer: Any, path: Path, examples: Sequence[str], source: str) -> Path:
    """Save an MLflow transformers model folder at `path`; `examples` become its input example (and signature)."""
    import mlflow.transformers

    model = model.to("cpu").eval()
    classes = [model.config.id2label[i] for i in range(model.config.num_labels)]
    with hub_client_offline():
        mlflow.transformers.save_model(
            transformers_model={"model": model, "tokenizer": tokenizer}, path=str(path), task=TASK,
            input_example=list(examples)[:2] or ["an example"], pip_requirements=pip_requirements(),
            model_card=model_card(classes, source), metadata={tags.MODEL_CLASSES: classes})
    return path


def log_text_model(model: Any, tokenizer: Any, logger: Any, examples: Sequence[str], source: str) -> str:
    """Save into a temporary folder and log it as the run's LoggedModel `model` (final metrics linked); returns
    `runs:/<run_id>/model`, which MLflow resolves to that model."""
    import tempfile

    from tasks.tracking.logged_model import log_model_folder, run_model_uri

    with tempfile.TemporaryDirectory(prefix="fuseflow-text-model-") as tmp:
        path = save_text_model(model, tokenizer, Path(tmp) / "model", examples, source)
        log_model_folder(logger.client, logger.run_id, path, model_type=TASK,
                         model_tags={"fuseflow.base_model": source})
    return run_model_uri(logger.run_id)
