"""Preprocess step `tokenize`: batched `Dataset.map` with the model's fast tokenizer, cached by fingerprint.

The cache key (the map's fingerprint) covers the input split's content (a digest of its texts and labels), the
tokenizer's full definition (its `tokenizer.json`) and the step's options, so a rerun with unchanged data and
tokenizer loads the tokenized Arrow file written by the first run (under `<HF_DATASETS_CACHE>/fuseflow-tokenized/`)
instead of tokenizing again, even when the data file was rewritten with the same content. Padding is dynamic (to the longest
text of each batch) unless `padding: max_length`; `group_by_length` batches texts of similar length together.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from tasks.cache.fingerprint import tokenizer_definition
from tasks.registry import PREPROCESSORS, StrictModel

if TYPE_CHECKING:
    from tasks.data.text import TextSplits

CACHE_FORMAT = "fuseflow-tokenize/1"  # bump when the tokenized columns change


@PREPROCESSORS.register
class TokenizeConfig(StrictModel):
    """Turn the text column(s) into model inputs with the model's fast tokenizer."""

    name: Literal["tokenize"] = "tokenize"
    modalities: ClassVar[frozenset[str]] = frozenset({"text"})
    max_length: int = Field(128, gt=0, le=8192, description="tokens per text (pair) after truncation")
    truncation: bool = True
    padding: Literal["dynamic", "max_length"] = Field(
        "dynamic", description="dynamic: pad each batch to its longest text; max_length: pad every text")
    group_by_length: bool = Field(False, description="batch texts of similar length together (less padding)")


def tokenizer_signature(tokenizer: Any) -> str:
    """A stable hash (in `datasets`' fingerprint format) of everything that decides the tokenizer's output."""
    from datasets.fingerprint import Hasher

    return Hasher.hash([type(tokenizer).__name__, tokenizer_definition(tokenizer), tokenizer.padding_side,
                        tokenizer.truncation_side, list(tokenizer.model_input_names)])


def _tokenize_batch(batch: dict[str, list], tokenizer: Any, columns: list[str], max_length: int, truncation: bool,
                    pad: bool) -> dict[str, list]:
    encoded = tokenizer(*[batch[c] for c in columns], max_length=max_length, truncation=truncation,
                        padding="max_length" if pad else False)
    out = {k: v for k, v in encoded.items()}
    out["length"] = [sum(mask) for mask in encoded["attention_mask"]]  # real tokens, for group_by_length
    return out


def cache_dir() -> Path:
    """Where tokenized splits are kept: `<datasets cache>/fuseflow-tokenized` (HF_DATASETS_CACHE moves it)."""
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "fuseflow-tokenized"


def tokenize_split(dataset: Any, digest: str, tokenizer: Any, columns: list[str], config: TokenizeConfig) -> tuple[Any, str]:
    """Tokenize one split whose content digest is `digest`; returns the tokenized dataset and 'reused' or 'computed'."""
    from datasets.fingerprint import Hasher

    fingerprint = Hasher.hash([CACHE_FORMAT, digest, tokenizer_signature(tokenizer), columns, config.max_length,
                               config.truncation, config.padding])
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    cache_file = folder / f"{fingerprint}.arrow"
    status = "reused" if cache_file.exists() else "computed"
    tokenized = dataset.map(
        _tokenize_batch, batched=True, batch_size=1000, remove_columns=columns, new_fingerprint=fingerprint,
        cache_file_name=str(cache_file), load_from_cache_file=True,
        fn_kwargs={"tokenizer": tokenizer, "columns": columns, "max_length": config.max_length,
                   "truncation": config.truncation, "pad": config.padding == "max_length"},
        desc="tokenizing")
    return tokenized, status


def tokenize_splits(splits: "TextSplits", tokenizer: Any, config: TokenizeConfig) -> "TextSplits":
    """Every split tokenized (text columns replaced by input_ids, attention_mask, ..., length)."""
    done, status = {}, {}
    for split, dataset in splits.datasets.items():
        digest = splits.split_digests.get(split) or dataset._fingerprint
        done[split], status[split] = tokenize_split(dataset, digest, tokenizer, splits.text_columns, config)
    return dataclasses.replace(splits, datasets=done, tokenize_cache=status)


def model_columns(dataset: Any) -> list[str]:
    """The tokenized columns a model takes (input_ids, attention_mask, token_type_ids)."""
    return [c for c in dataset.column_names if c not in ("label", "length")]


class TextBatches:
    """Indexable batches of a tokenized split for the plain torch loop: `batches[idx]` -> padded tensor dict.

    It stands where the tabular loop has a feature tensor `X`: `len()`, `.to(device)`, indexing by a tensor of row
    ids or a slice, and `epoch_order(generator)` (random, or grouped by length).
    """

    def __init__(self, dataset: Any, pad_token_id: int, batch_size: int, group_by_length: bool = False) -> None:
        self.columns = model_columns(dataset)
        self.rows = {c: dataset[c] for c in self.columns}
        self.lengths = list(dataset["length"]) if "length" in dataset.column_names else \
            [len(ids) for ids in self.rows["input_ids"]]
        self.pad_values = {c: (pad_token_id if c == "input_ids" else 0) for c in self.columns}
        self.batch_size = batch_size
        self.group_by_length = group_by_length
        self.device = "cpu"

    @classmethod
    def of(cls, splits: "TextSplits", split: str, tokenizer: Any, batch_size: int,
           group_by_length: bool = False) -> "TextBatches":
        """The batches of one tokenized split, padded with the tokenizer's pad token."""
        return cls(splits.datasets[split], tokenizer.pad_token_id or 0, batch_size, group_by_length)

    def __len__(self) -> int:
        return len(self.lengths)

    def to(self, device: Any) -> "TextBatches":
        self.device = device
        return self

    def epoch_order(self, generator: Any) -> Any:
        """Row order of one epoch: a random permutation, or length-grouped (transformers' sampler logic)."""
        import torch

        if not self.group_by_length:
            return torch.randperm(len(self), generator=generator)
        from transformers.trainer_pt_utils import get_length_grouped_indices

        return torch.tensor(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))

    def __getitem__(self, index: Any) -> dict[str, Any]:
        import torch

        if isinstance(index, slice):
            rows = range(len(self))[index]
        else:
            rows = index.tolist() if hasattr(index, "tolist") else list(index)
        width = max(len(self.rows["input_ids"][i]) for i in rows)
        batch = {}
        for column in self.columns:
            pad = self.pad_values[column]
            values = [self.rows[column][i] for i in rows]
            batch[column] = torch.tensor([v + [pad] * (width - len(v)) for v in values], dtype=torch.long)
        return {k: v.to(self.device) for k, v in batch.items()}
