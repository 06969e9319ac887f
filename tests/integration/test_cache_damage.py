"""A damaged cache is a miss, never a failure: truncated or garbled result files (a full disk, a copy cut short) make
the next run warn, compute those steps again and write good results, which the run after reuses."""
from __future__ import annotations

import pytest

from flows.cli import main
from tests.support.helpers import TINY_IRIS, runs_of, write_pipelines


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_damaged_result_is_recomputed_and_replaced(damage, prefect_harness, tmp_path, monkeypatch):
    from tests.support.helpers import tracking_uri_env

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FUSEFLOW_CACHE_DIR", raising=False)
    path = write_pipelines(tmp_path, TINY_IRIS)

    def forget_earlier_runs() -> None:
        """Deleted runs are never reused whole: the next run reads (and here finds damaged) its steps' results."""
        from mlflow import MlflowClient

        for run in runs_of(uri):
            MlflowClient(uri).delete_run(run.info.run_id)

    with tracking_uri_env(tmp_path) as uri:
        assert main(["run", "iris-tiny", "--file", str(path)]) == 0
        results = sorted((tmp_path / ".fuseflow" / "cache" / "results").iterdir())
        assert len(results) >= 3  # load-data, preprocess, train
        for result in results:
            data = result.read_bytes()
            result.write_bytes(data[: len(data) // 2] if damage == "truncated" else data[:40] + b"#%!" * 50)
        forget_earlier_runs()
        assert main(["run", "iris-tiny", "--file", str(path)]) == 0
        second = max(runs_of(uri), key=lambda r: r.info.start_time)
        assert second.info.status == "FINISHED" and "test_accuracy" in second.data.metrics
        for step in ("load-data", "preprocess", "train"):  # each damaged step was computed again, and says why
            assert second.data.tags[f"fuseflow.cache.{step}"] == "computed"
            assert second.data.tags[f"fuseflow.cache.{step}.reason"] == "the cached result was damaged: computed again"
        forget_earlier_runs()
        assert main(["run", "iris-tiny", "--file", str(path)]) == 0  # the replaced results are good
        third = max(runs_of(uri), key=lambda r: r.info.start_time)
    assert third.info.status == "FINISHED" and third.data.tags["fuseflow.cache.train"] == "cached"
    assert third.data.metrics["test_accuracy"] == pytest.approx(second.data.metrics["test_accuracy"])
