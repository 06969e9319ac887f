"""A damaged cache is a miss, never a failure: truncated or garbled result files (a full disk, a copy cut short) make
the next run warn, compute those steps again and write good results, which the run after reuses."""
from __future__ import annotations

from pathlib import Path

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


def _payload(marker: Path) -> bytes:
    """cloudpickle bytes whose loading creates `marker` (Prefect's pickle serializer wraps them in base64)."""
    import base64
    import pathlib

    import cloudpickle

    class Touch:
        def __reduce__(self):
            return (pathlib.Path.touch, (pathlib.Path(str(marker)),))

    return base64.encodebytes(cloudpickle.dumps(Touch()))


@pytest.mark.parametrize("planted", ["result-only", "record-and-result", "record-from-another-key"])
def test_a_planted_cache_file_is_refused_before_it_is_unpickled(planted, prefect_harness, tmp_path, monkeypatch):
    """A shared FUSEFLOW_CACHE_DIR or an unpacked archive can hold files this user never wrote: they are not
    loaded (no code runs); the step computes again and the run finishes."""
    import json

    from tests.support.helpers import tracking_uri_env

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FUSEFLOW_CACHE_DIR", raising=False)
    path = write_pipelines(tmp_path, TINY_IRIS)
    marker = tmp_path / "planted-code-ran"
    with tracking_uri_env(tmp_path) as uri:
        assert main(["run", "iris-tiny", "--file", str(path)]) == 0
        cache = tmp_path / ".fuseflow" / "cache"
        keys = sorted((cache / "keys").iterdir())
        assert keys and all(k.read_bytes().startswith(b"fuseflow-hmac-sha256:") for k in keys)
        assert all((cache / "results" / k.name).read_bytes().startswith(b"fuseflow-hmac-sha256:") for k in keys)
        for key in keys:
            result = cache / "results" / key.name
            result.write_bytes(_payload(marker))
            if planted == "record-and-result":  # a record naming Prefect's plain pickle serializer, unsigned
                record = json.loads(key.read_bytes().split(b"\n", 1)[1])
                record["serializer"] = {"type": "pickle", "picklelib": "cloudpickle"}
                key.write_bytes(json.dumps(record).encode())
            elif planted == "record-from-another-key":  # a validly signed record moved under another key
                key.write_bytes(keys[(keys.index(key) + 1) % len(keys)].read_bytes())
        from mlflow import MlflowClient

        for run in runs_of(uri):
            MlflowClient(uri).delete_run(run.info.run_id)
        assert main(["run", "iris-tiny", "--file", str(path)]) == 0
        second = max(runs_of(uri), key=lambda r: r.info.start_time)
    assert not marker.exists(), "a planted cache file was unpickled"
    assert second.info.status == "FINISHED" and "test_accuracy" in second.data.metrics
    assert second.data.tags["fuseflow.cache.train"] == "computed"
