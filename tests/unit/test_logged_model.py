"""Which epoch's validation metrics a LoggedModel is linked to, the run's datasets by context, the LoggedModel URI
form a scoring pipeline takes, and the switch that turns system metrics off."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from tasks.scoring.model import parse_model_uri
from tasks.tracking.logged_model import kept_epoch, run_datasets, run_model_uri
from tasks.tracking.system_metrics import enabled


def _run(params=None, metrics=None, inputs=None):
    return SimpleNamespace(data=SimpleNamespace(params=params or {}, metrics=metrics or {}),
                           inputs=SimpleNamespace(dataset_inputs=inputs or []))


def test_the_kept_epoch_is_the_best_one_only_when_its_weights_are_restored():
    assert kept_epoch(_run({"train.early_stopping.restore_best": "True"}, {"best_epoch": 3.0})) == 3
    assert kept_epoch(_run({"train.best_model_metric": "val_loss"}, {"best_epoch": 2.0})) == 2
    assert kept_epoch(_run({"train.early_stopping.restore_best": "False"}, {"best_epoch": 3.0})) is None
    assert kept_epoch(_run({}, {})) is None


def test_run_datasets_are_keyed_by_their_context():
    def item(name, digest, context):
        return SimpleNamespace(dataset=SimpleNamespace(name=name, digest=digest),
                               tags=[SimpleNamespace(key="mlflow.data.context", value=context)])

    found = run_datasets(_run(inputs=[item("d", "a", "training"), item("d", "b", "validation"), item("d", "c", "test")]))
    assert found == {"training": ("d", "a"), "validation": ("d", "b"), "test": ("d", "c")}


def test_a_scoring_pipeline_takes_a_logged_model_uri():
    assert parse_model_uri("models:/m-0123456789abcdef") == {"kind": "logged", "model_id": "m-0123456789abcdef"}
    assert parse_model_uri("models:/diamonds@champion")["kind"] == "alias"
    assert parse_model_uri(run_model_uri("0123456789abcdef"))["kind"] == "run"
    with pytest.raises(ValueError, match="models:/<model_id>"):
        parse_model_uri("models:/")


@pytest.mark.parametrize("value, on", [(None, True), ("true", True), ("false", False), ("0", False), ("FALSE", False)])
def test_system_metrics_are_on_unless_turned_off(monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", value)
    assert enabled() is on
