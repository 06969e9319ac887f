"""Builders for the text tests: a small ham/spam corpus, a WordPiece tokenizer trained on it, tiny pipelines."""
from __future__ import annotations

import csv
import random
from pathlib import Path

HAM_WORDS = ["meeting", "lunch", "tomorrow", "call", "home", "thanks", "dinner", "mum", "later", "office", "see",
             "you", "at", "the", "tonight", "ok", "love", "weekend", "train", "late"]
SPAM_WORDS = ["win", "free", "prize", "cash", "claim", "urgent", "offer", "txt", "now", "winner", "reply", "stop",
              "award", "bonus", "guaranteed", "call", "the", "now", "mobile", "voucher"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

#: a fresh BERT small enough to train in seconds on a CPU
TINY_BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 64}


def ham_spam_rows(n: int = 120, seed: int = 0) -> list[tuple[str, str]]:
    """`n` (text, label) rows, half ham and half spam, each text 3-9 words of its class' vocabulary."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "spam" if i % 2 else "ham"
        words = SPAM_WORDS if label == "spam" else HAM_WORDS
        rows.append((" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))), label))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def spam_project(folder: Path, n: int = 120, seed: int = 0) -> tuple[Path, Path]:
    """`folder/spam.csv` with `n` ham/spam rows and `folder/tokenizer` trained on their texts: (csv, tokenizer)."""
    rows = ham_spam_rows(n, seed=seed)
    return write_csv(folder / "spam.csv", rows), train_tokenizer(folder / "tokenizer", [t for t, _ in rows])


def train_tokenizer(folder: Path, texts: list[str]) -> Path:
    """A lower-casing WordPiece tokenizer trained with `tokenizers` on `texts`, saved as a transformers folder."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=200, special_tokens=SPECIAL))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                      sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)
    folder.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(str(folder))
    return folder


def text_pipelines(csv_path: Path, tokenizer_dir: Path, backend: str = "hf_trainer", epochs: int = 3,
                   name: str = "spam-tiny", extra_data: str = "") -> str:
    """A pipelines.yaml with one tiny text pipeline over `csv_path`."""
    return f"""\
defaults:
  seed: 3
pipelines:
  {name}:
    description: tiny BERT on a ham/spam CSV
    data:
      source: csv
      path: {csv_path}
      text_column: text
      label_column: label
      split: {{validation: 0.2, test: 0.2}}{extra_data}
    preprocess:
      - tokenize: {{max_length: 16}}
    model:
      type: hf_sequence_classification
      config: {TINY_BERT}
      tokenizer: {tokenizer_dir}
    train:
      backend: {backend}
      epochs: {epochs}
      batch_size: 16
      eval_batch_size: 32
      optimizer: {{name: adamw, lr: 0.005, weight_decay: 0.01}}
      scheduler: {{name: linear, warmup_steps: 2}}
"""
