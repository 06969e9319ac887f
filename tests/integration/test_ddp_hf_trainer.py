"""`train.distributed` on `backend: hf_trainer`: the HF Trainer under torchrun (gloo, 2 CPU processes), rank 0 alone
logging and checkpointing; a failing rank, and a resume from a distributed Trainer checkpoint."""
from __future__ import annotations

import math
import textwrap

import pytest

from tests.support.text_helpers import TINY_BERT, ham_spam_rows, spam_project, text_pipelines, train_tokenizer

EPOCHS = 3  # an epoch takes ~0.1 s here: the run's time is torchrun's start
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "val_f1_macro", "lr")
DISTRIBUTED = "      distributed: {nproc_per_node: 2, backend: gloo}\n"


@pytest.fixture(scope="module")
def hf_ddp_project(tmp_path_factory, prefect_harness):
    """A tiny BERT trained with `backend: hf_trainer` under DDP through the pipeline, once; the digests the launcher
    compared."""
    from flows.pipeline import run_pipeline
    from tasks.train.ddp import launcher as distributed
    from tests.support.helpers import tracking_uri_env

    folder = tmp_path_factory.mktemp("hf-ddp-project")
    spam_project(folder)
    text = text_pipelines(folder / "spam.csv", folder / "tokenizer", "hf_trainer", EPOCHS, name="spam-hf-ddp")
    text = text.replace("      batch_size: 16\n", "      batch_size: 8\n")  # per process: 16 rows a step, as 1 process
    (folder / "pipelines.yaml").write_text(text + DISTRIBUTED, encoding="utf-8")
    compared = []
    check = distributed.check_equal_weights

    def recording_check(digests, world_size):
        compared.append(dict(digests))
        return check(digests, world_size)

    with pytest.MonkeyPatch.context() as mp, tracking_uri_env(folder) as uri:
        mp.setattr(distributed, "check_equal_weights", recording_check)
        summary = run_pipeline("spam-hf-ddp", None, str(folder / "pipelines.yaml"))
        yield folder, uri, summary, compared


def test_one_finished_run_trained_by_two_processes(hf_ddp_project):
    from mlflow import MlflowClient

    folder, uri, summary, compared = hf_ddp_project
    run = MlflowClient(uri).get_run(summary.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.backend"] == "hf_trainer"
    assert run.data.tags["fuseflow.distributed.world_size"] == "2"  # read from the Trainer's process group
    assert run.data.tags["fuseflow.distributed.backend"] == "gloo"
    assert run.data.metrics["epochs_run"] == EPOCHS
    assert run.data.metrics["test_accuracy"] >= 0.8
    assert run.data.metrics["train_samples_per_s"] > 0


def test_every_rank_ended_with_the_same_weights(hf_ddp_project):
    folder, uri, summary, compared = hf_ddp_project
    (digests,) = compared
    assert sorted(digests) == [0, 1] and digests[0] == digests[1] and len(digests[0]) == 64


def test_rank_zero_logged_each_epoch_metric_once_at_the_single_process_steps(hf_ddp_project):
    from mlflow import MlflowClient

    folder, uri, summary, compared = hf_ddp_project
    client = MlflowClient(uri)
    for name in EPOCH_METRICS:
        assert [m.step for m in client.get_metric_history(summary.run_id, name)] == [1, 2, 3], name
    val_loss = client.get_metric_history(summary.run_id, "val_loss")[0].value
    assert 0 < val_loss < 1.0  # a mean cross-entropy of 2 classes, not multiplied by the world size


def test_rank_zero_wrote_the_trainer_checkpoints_into_the_run(hf_ddp_project):
    folder, uri, summary, compared = hf_ddp_project
    run_folder = next((folder / "mlruns").glob(f"**/{summary.run_id}/artifacts"))
    checkpoints = sorted(run_folder.glob("checkpoints/hf-trainer/checkpoint-*"))
    assert [p.name for p in checkpoints] == ["checkpoint-10", "checkpoint-15"]  # the newest 2 of 3 (5 steps an epoch)
    for checkpoint in checkpoints:
        assert (checkpoint / "fuseflow.json").is_file() and (checkpoint / "trainer_state.json").is_file()
        assert {p.name for p in checkpoint.glob("rng_state*")} == {"rng_state_0.pth", "rng_state_1.pth"}


def test_logged_model_loads_and_predicts_strings(hf_ddp_project):
    import mlflow

    folder, uri, summary, compared = hf_ddp_project
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(summary.model_uri)
    out = model.predict(["win free cash prize now", "see you at lunch tomorrow"])
    assert list(out["label"]) == ["spam", "ham"]


# ---------------------------------------------------------------- the launcher alone: a failing rank, a resume

CRASHING_BERT = '''
import os

from transformers import BertForSequenceClassification


class CrashingBert(BertForSequenceClassification):
    """Raises in training forward call number $CRASH_AT on rank $CRASH_RANK (when both are set)."""

    calls = 0

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        # (named: the Trainer keeps the dataset columns that forward's signature names)
        if self.training:
            CrashingBert.calls += 1
            if (str(CrashingBert.calls) == os.environ.get("CRASH_AT")
                    and os.environ.get("RANK") == os.environ.get("CRASH_RANK")):
                raise RuntimeError(f"rank {os.environ['RANK']} broke on purpose in step {CrashingBert.calls}")
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               labels=labels, **kwargs)
'''


def _tokenized(tmp_path):
    from datasets import Dataset
    from transformers import AutoTokenizer

    rows = ham_spam_rows(100, seed=1)
    train_tokenizer(tmp_path / "tokenizer", [t for t, _ in rows])
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "tokenizer"))

    def dataset(part):
        encoded = tokenizer([t for t, _ in part], truncation=True, max_length=16)
        return Dataset.from_dict({**encoded, "label": [int(label == "spam") for _, label in part]})

    return dataset(rows[:64]), dataset(rows[64:]), tokenizer


def _crashing_bert(tmp_path, monkeypatch, tokenizer, seed: int = 0):
    import importlib

    import torch
    from transformers import BertConfig

    (tmp_path / "crashing_bert.py").write_text(textwrap.dedent(CRASHING_BERT), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))  # the workers unpickle the model's class from there
    module = importlib.import_module("crashing_bert")
    torch.manual_seed(seed)
    sizes = {k: v for k, v in TINY_BERT.items() if k != "model_type"}
    return module.CrashingBert(BertConfig(vocab_size=len(tokenizer), num_labels=2, **sizes))


@pytest.mark.slow  # ~31 s: three torchrun launches
def test_failing_rank_and_resume_from_a_distributed_trainer_checkpoint(tmp_path, monkeypatch, tracking_uri):
    """64 rows, batch 16, 2 ranks: 2 steps per epoch. Rank 0 fails in epoch 3's second step, after the
    synchronised first one (so every rank has finished epoch 2's checkpoint); the next call resumes from it and
    ends like an uninterrupted run, each epoch logged once."""
    from mlflow import MlflowClient

    from tasks.cache.fingerprint import weights_digest
    from tasks.train.ddp.launcher import DistributedTrainingError, train_hf_distributed
    from tasks.tracking.logger import RunLogger
    from tasks.train.backends.hf_trainer import HFTrainerConfig

    train_set, val_set, tokenizer = _tokenized(tmp_path)
    config = HFTrainerConfig(backend="hf_trainer", epochs=3, batch_size=16, scheduler={"name": "linear"},
                             optimizer={"name": "adamw", "lr": 0.005},
                             distributed={"nproc_per_node": 2, "backend": "gloo"})
    logger = RunLogger(MlflowClient(tracking_uri).create_run("0").info.run_id, tracking_uri)

    monkeypatch.setenv("CRASH_AT", "6")
    monkeypatch.setenv("CRASH_RANK", "0")
    with pytest.raises(DistributedTrainingError,
                       match=r"rank 0 of 2 failed: RuntimeError: rank 0 broke on purpose in step 6"):
        train_hf_distributed(_crashing_bert(tmp_path, monkeypatch, tokenizer), train_set, val_set, tokenizer,
                             config, 0, logger=logger, checkpoint_dir=tmp_path / "interrupted")
    assert [m.step for m in logger.client.get_metric_history(logger.run_id, "val_loss")] == [1, 2]

    monkeypatch.delenv("CRASH_AT")
    assert (tmp_path / "interrupted" / "checkpoint-4" / "fuseflow.json").is_file()  # epoch 2: 2 steps an epoch
    resumed_model = _crashing_bert(tmp_path, monkeypatch, tokenizer, seed=1)  # the checkpoint's weights must win
    resumed = train_hf_distributed(resumed_model, train_set, val_set, tokenizer, config, 0, logger=logger,
                                   checkpoint_dir=tmp_path / "interrupted")
    for name in EPOCH_METRICS:  # epochs 1-2 neither rerun nor logged again
        assert [m.step for m in logger.client.get_metric_history(logger.run_id, name)] == [1, 2, 3], name

    full_model = _crashing_bert(tmp_path, monkeypatch, tokenizer)
    full = train_hf_distributed(full_model, train_set, val_set, tokenizer, config, 0,
                                checkpoint_dir=tmp_path / "uninterrupted")
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    for got, expected in zip(resumed.history, full.history):
        for key in expected:
            assert math.isclose(got[key], expected[key], rel_tol=1e-4, abs_tol=1e-6), (got, expected)
    if weights_digest(resumed_model) != weights_digest(full_model):
        import torch

        for (name, a), b in zip(resumed_model.state_dict().items(), full_model.state_dict().values()):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), name


def test_early_stopping_agrees_across_ranks_and_keeps_the_best_weights(tmp_path):
    """Validation metrics are gathered from every rank, so every rank's early stopping decides alike (a rank that
    went on alone would hang in its next all-reduce), and the best epoch's weights are restored on each."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from tasks.train.ddp.launcher import train_hf_distributed
    from tasks.train.backends.hf_trainer import HFTrainerConfig

    train_set, val_set, tokenizer = _tokenized(tmp_path)
    config = HFTrainerConfig(backend="hf_trainer", epochs=30, batch_size=16, optimizer={"name": "adamw", "lr": 0.02},
                             early_stopping={"monitor": "val_loss", "patience": 1},
                             distributed={"nproc_per_node": 2, "backend": "gloo"})
    torch.manual_seed(0)
    sizes = {k: v for k, v in TINY_BERT.items() if k != "model_type"}
    model = BertForSequenceClassification(BertConfig(vocab_size=len(tokenizer), num_labels=2, **sizes))
    result = train_hf_distributed(model, train_set, val_set, tokenizer, config, 0)  # raises if the weights differ
    assert result.stopped_early and result.epochs_run < 30
    assert result.epochs_run - result.best_epoch == 1
    assert result.best_epoch == min(result.history, key=lambda h: h["val_loss"])["epoch"]
