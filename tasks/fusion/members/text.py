"""Text members: a fine-tuned transformers sequence classifier (as fuseflow's text pipelines log it) giving logits
for raw texts, or text pairs. Loads from the MLflow `transformers` model folder (`model/`, `components/tokenizer/`)
or from a fused model's member folder (`hf_model/`, `tokenizer/`); both are safetensors + JSON, no pickle.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from tasks.fusion.members.base import FusionMember
from tasks.export.torch_model import SPEC_FILE
from tasks.tracking import tags

TEXT_FORMAT = "fuseflow-text/1"
BATCH = 64


def mlflow_text_spec(mlmodel: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The member spec of an MLflow transformers text classifier logged by fuseflow (None for anything else)."""
    flavor = (mlmodel.get("flavors") or {}).get("transformers")
    classes = (mlmodel.get("metadata") or {}).get(tags.MODEL_CLASSES)
    if not flavor or flavor.get("task") != "text-classification" or not classes:
        return None
    return {"format": TEXT_FORMAT, "kind": "text", "task": "classification", "classes": list(classes),
            "model": {"type": "hf_sequence_classification", "architecture": flavor.get("pipeline_model_type")}}


class TextMember(FusionMember):
    """A transformers sequence classifier and its tokenizer; `max_length` as the member was trained with."""

    kind = "text"

    def __init__(self, name: str, model: Any, tokenizer: Any, classes: Sequence[Any], max_length: Optional[int]) -> None:
        self.name, self.model, self.tokenizer = name, model.eval(), tokenizer
        self.classes = list(classes)
        self.max_length = max_length
        self.spec = {"format": TEXT_FORMAT, "kind": "text", "task": "classification", "classes": self.classes,
                     "max_length": max_length}

    @classmethod
    def from_dir(cls, name: str, folder: Path) -> "TextMember":
        """From an MLflow transformers model folder or a fused model's member folder."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(folder)
        spec_path = folder / "extra_files" / SPEC_FILE
        spec = json.loads(spec_path.read_text(encoding="utf-8")) if spec_path.is_file() else {}
        model_dir = folder / "hf_model" if (folder / "hf_model").is_dir() else folder / "model"
        tokenizer_dir = folder / "tokenizer" if (folder / "tokenizer").is_dir() else folder / "components" / "tokenizer"
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        classes = spec.get("classes") or [model.config.id2label[i] for i in range(model.config.num_labels)]
        return cls(name, model, tokenizer, classes, spec.get("max_length"))

    def logits(self, inputs: Any) -> np.ndarray:
        import torch

        texts = list(inputs)
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), BATCH):
                batch = texts[i:i + BATCH]
                pairs = bool(batch) and isinstance(batch[0], (tuple, list))
                args = ([a for a, _ in batch], [b for _, b in batch]) if pairs else ([str(t) for t in batch],)
                encoded = self.tokenizer(*args, padding=True, truncation=True, max_length=self.max_length,
                                         return_tensors="pt")
                out.append(self.model(**encoded).logits.double().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)))

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def with_state(self, name: str, state: dict[str, Any]) -> "TextMember":
        """A copy of this member with other weights (a soup of fine-tunings of one pretrained model)."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(state)
        return TextMember(name, model, self.tokenizer, self.classes, self.max_length)

    def save(self, folder: Path) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(folder / "hf_model"))
        self.tokenizer.save_pretrained(str(folder / "tokenizer"))
        extras = folder / "extra_files"
        extras.mkdir(exist_ok=True)
        (extras / SPEC_FILE).write_text(json.dumps(self.spec, indent=2), encoding="utf-8")
        return {"name": self.name, "kind": self.kind}

