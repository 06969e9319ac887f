"""Text pipelines checkpoint and resume: training that fails after its second epoch's checkpoint, then `resume`,
ends in the same MLflow run with the test metrics of an uninterrupted run (torch: equal; hf_trainer: allclose)."""
from __future__ import annotations

import math

import pytest

from tests.support.helpers import runs_of
from tests.support.text_helpers import spam_project, text_pipelines

EPOCHS = 3
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "val_f1_macro")


def _crash_after_second_checkpoint(monkeypatch, backend: str) -> dict[str, bool]:
    """Make the second epoch's checkpoint be written, then fail training once."""
    crashed = {"done": False}
    if backend == "torch":
        from tasks.train.checkpoint import Checkpointer

        original = Checkpointer.__call__

        def call(self, epoch, state):
            self.min_seconds = 0  # a checkpoint each epoch (the default waits 30 s between them)
            original(self, epoch, state)
            if epoch == 2 and not crashed["done"]:
                crashed["done"] = True
                self.wait()
                raise RuntimeError("simulated crash after the second checkpoint")

        monkeypatch.setattr(Checkpointer, "__call__", call)
    else:
        from tasks.train.backends import hf_trainer as train_hf

        original = train_hf.save_progress

        def save(folder, progress):
            original(folder, progress)
            if progress["epoch"] == 2 and not crashed["done"]:
                crashed["done"] = True
                raise RuntimeError("simulated crash after the second checkpoint")

        monkeypatch.setattr(train_hf, "save_progress", save)
    return crashed


@pytest.mark.parametrize("backend,extra", [("torch", ""), ("hf_trainer", ""),
                                           ("hf_trainer", "      best_model_metric: val_loss\n")],
                         ids=["torch", "hf_trainer", "hf_trainer-best-model"])
def test_text_training_interrupted_after_epoch_two_resumes_like_an_uninterrupted_run(
        prefect_harness, project_dir, tracking_uri, monkeypatch, backend, extra):
    from mlflow import MlflowClient

    from flows.pipeline import run_pipeline

    spam_project(project_dir)
    (project_dir / "pipelines.yaml").write_text(
        text_pipelines(project_dir / "spam.csv", project_dir / "tokenizer", backend, EPOCHS) + extra, encoding="utf-8")
    client = MlflowClient(tracking_uri)

    crashed = _crash_after_second_checkpoint(monkeypatch, backend)
    with pytest.raises(Exception, match="simulated crash"):
        run_pipeline("spam-tiny", None, "pipelines.yaml")
    assert crashed["done"]
    [failed] = runs_of(tracking_uri)
    run_id = failed.info.run_id
    assert failed.info.status == "FAILED"
    assert not any(k.startswith("test_") for k in failed.data.metrics)
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1, 2]
    monkeypatch.undo()
    monkeypatch.chdir(project_dir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)

    resumed = run_pipeline("spam-tiny", None, "pipelines.yaml", resume=True)
    assert resumed.run_id == run_id  # continued in the same MLflow run
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["fuseflow.resumed"] == "1"
    for name in EPOCH_METRICS:  # epochs 1-2 are neither rerun nor logged twice
        assert [m.step for m in client.get_metric_history(run_id, name)] == list(range(1, EPOCHS + 1)), name

    reference = run_pipeline("spam-tiny", None, "pipelines.yaml", no_cache=True)
    assert reference.run_id != run_id
    got, expected = resumed.metrics, reference.metrics
    assert set(got) == set(expected) and len(got) >= 3
    assert got["test_accuracy"] >= 0.8  # it learned: the comparison means something
    if backend == "torch":
        assert got == expected
    else:
        checkpoints = list((project_dir / "mlruns").glob(f"**/{run_id}/artifacts/checkpoints/hf-trainer/checkpoint-*"))
        assert checkpoints, "no Trainer checkpoint in the run's artifacts"
        for key in expected:
            assert math.isclose(got[key], expected[key], rel_tol=1e-4, abs_tol=1e-6), key
