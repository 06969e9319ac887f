"""The `tokenize` step: fingerprint cache reuse, padding modes, batches for the torch loop, length grouping."""
from __future__ import annotations

from pathlib import Path

import pytest

from tasks.registry import DATA_SOURCES
from tasks.data.preprocess.tokenize import TextBatches, TokenizeConfig, tokenize_splits, tokenizer_signature
from tests.support.text_helpers import spam_project


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tokenize")
    return spam_project(folder, 80, seed=4)


def _splits(csv_path: Path):
    from tasks.data.text import load_text

    config = DATA_SOURCES.get("csv").model_validate(
        {"source": "csv", "path": str(csv_path), "text_column": "text", "label_column": "label"})
    return load_text(config, 0, Path("."))


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def test_a_rerun_reuses_the_tokenized_cache(corpus, monkeypatch):
    """Same data and tokenizer: no tokenizer call at all the second time, the same Arrow files are read."""
    import tasks.data.preprocess.tokenize as tok

    csv_path, tok_dir = corpus
    calls = []
    original = tok._tokenize_batch
    monkeypatch.setattr(tok, "_tokenize_batch", lambda batch, **kw: calls.append(1) or original(batch, **kw))
    config = TokenizeConfig(max_length=12)
    first = tokenize_splits(_splits(csv_path), _tokenizer(tok_dir), config)
    assert set(first.tokenize_cache.values()) == {"computed"} and calls
    files = sorted(tok.cache_dir().glob("*.arrow"))
    mtimes = [f.stat().st_mtime_ns for f in files]

    calls.clear()
    csv_path.write_bytes(csv_path.read_bytes())  # same content, new file date: still a cache hit
    again = tokenize_splits(_splits(csv_path), _tokenizer(tok_dir), config)
    assert set(again.tokenize_cache.values()) == {"reused"}
    assert calls == []
    assert sorted(tok.cache_dir().glob("*.arrow")) == files
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    for split in ("train", "validation", "test"):
        assert again.datasets[split]["input_ids"] == first.datasets[split]["input_ids"]
        assert again.datasets[split].cache_files[0]["filename"] == first.datasets[split].cache_files[0]["filename"]

    changed = tokenize_splits(_splits(csv_path), _tokenizer(tok_dir), TokenizeConfig(max_length=6))
    assert set(changed.tokenize_cache.values()) == {"computed"}
    assert max(len(ids) for ids in changed.datasets["train"]["input_ids"]) == 6


def test_tokenizer_signature_ignores_call_state(corpus):
    tokenizer = _tokenizer(corpus[1])
    before = tokenizer_signature(tokenizer)
    tokenizer(["win free cash"], max_length=4, truncation=True, padding="max_length")
    assert tokenizer_signature(tokenizer) == before


def test_padding_modes(corpus):
    csv_path, tok_dir = corpus
    dynamic = tokenize_splits(_splits(csv_path), _tokenizer(tok_dir), TokenizeConfig(max_length=16))
    fixed = tokenize_splits(_splits(csv_path), _tokenizer(tok_dir), TokenizeConfig(max_length=16, padding="max_length"))
    assert len({len(ids) for ids in dynamic.datasets["train"]["input_ids"]}) > 1
    assert {len(ids) for ids in fixed.datasets["train"]["input_ids"]} == {16}
    assert dynamic.datasets["train"]["length"] == fixed.datasets["train"]["length"]  # real tokens, not padding
    columns = dynamic.datasets["train"].column_names
    assert "text" not in columns and {"label", "input_ids", "attention_mask", "length"} <= set(columns)


def test_text_batches_pad_each_batch_to_its_longest_row(corpus):
    import torch

    csv_path, tok_dir = corpus
    tokenizer = _tokenizer(tok_dir)
    splits = tokenize_splits(_splits(csv_path), tokenizer, TokenizeConfig(max_length=16))
    batches = TextBatches(splits.datasets["train"], tokenizer.pad_token_id, batch_size=8)
    batch = batches[torch.tensor([0, 1, 2])]
    lengths = [len(splits.datasets["train"]["input_ids"][i]) for i in range(3)]
    assert batch["input_ids"].shape == (3, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batches[0:5]["input_ids"].shape[0] == 5
    assert len(batches) == len(splits.datasets["train"])


def test_group_by_length_cuts_padding(corpus):
    import torch

    csv_path, tok_dir = corpus
    tokenizer = _tokenizer(tok_dir)
    train = tokenize_splits(_splits(csv_path), tokenizer, TokenizeConfig(max_length=16)).datasets["train"]

    def padding(group: bool) -> int:
        batches = TextBatches(train, tokenizer.pad_token_id, batch_size=4, group_by_length=group)
        order = batches.epoch_order(torch.Generator().manual_seed(0))
        assert sorted(order.tolist()) == list(range(len(batches)))  # a permutation: every row once
        total = 0
        for i in range(0, len(order), 8):
            lengths = [batches.lengths[j] for j in order[i:i + 8].tolist()]
            total += sum(max(lengths) - n for n in lengths)
        return total

    assert padding(True) < padding(False)
