"""Progress in Prefect: one INFO line per training epoch in the flow run's logs (read back from the Prefect API) for
the torch loop, the HF Trainer and DDP, each printed once on `fuseflow run`'s console; and `RunProgress`, the progress
artifact of a sweep's trials or a fusion's members, against the test API (threads updating it at once)."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest

from tests.support.helpers import TINY_IRIS, cli_env, runs_of, tracking_uri_env, write_pipelines

MONITORED_IRIS = TINY_IRIS.replace("      optimizer: {name: adam, lr: 0.02}\n",
                                   "      optimizer: {name: adam, lr: 0.02}\n"
                                   "      early_stopping: {monitor: val_f1_macro, patience: 10}\n")
NUMBER = r"-?[0-9.]+(?:e[-+]?\d+)?"
TIME = r"(?:[0-9.]+ s|\d+m\d\ds|\d+h\d\dm)"


def epoch_pattern(monitor: str) -> re.Pattern:
    """An epoch line: `epoch 3/4  train_loss 0.41  val_loss 0.39  <monitor> 0.91 (best)  0.1 s (elapsed 0.4 s)`."""
    return re.compile(rf"^epoch (\d+)/(\d+)  train_loss ({NUMBER})  val_loss ({NUMBER})  {monitor} ({NUMBER})"
                      rf"( \(best\))?  {TIME} \(elapsed {TIME}\)$")


def flow_run_logs(flow_run_id: str, wanted: int = 1, timeout: float = 15.0) -> list:
    """The flow run's log records (its tasks' included) from the API, oldest first; waits until `wanted` epoch lines
    are there (the API handler sends records in batches)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                                    sort=LogSort.TIMESTAMP_ASC)
            if sum(log.message.startswith("epoch ") for log in logs) >= wanted or time.monotonic() > deadline:
                return logs
            time.sleep(0.5)


def epoch_lines(logs: list) -> list:
    return [log for log in logs if log.message.startswith("epoch ")]


def pipeline_run(uri: str):
    (run,) = [r for r in runs_of(uri)]
    return run


# ------------------------------------------------------------------------------------------------- torch loop

@pytest.fixture(scope="module")
def cli_run(prefect_harness, tmp_path_factory):
    """`fuseflow run iris-tiny` (4 epochs, early stopping on val_f1_macro) in its own process against this session's
    Prefect API, its console output (stdout and stderr) captured."""
    folder = tmp_path_factory.mktemp("progress-cli")
    path = write_pipelines(folder, MONITORED_IRIS)
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "run", "iris-tiny", "--file", str(path)], cwd=folder,
                          env={**cli_env(folder), "MLFLOW_TRACKING_URI": uri}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return pipeline_run(uri), uri, proc.stdout


def test_one_info_line_per_epoch_reaches_the_flow_run_logs(cli_run):
    from mlflow import MlflowClient

    run, uri, _ = cli_run
    logs = epoch_lines(flow_run_logs(run.data.tags["prefect.flow_run_id"], wanted=4))
    pattern = epoch_pattern("val_f1_macro")
    matches = [pattern.match(log.message) for log in logs]
    assert all(matches), [log.message for log in logs]
    assert [(int(m.group(1)), int(m.group(2))) for m in matches] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert {log.level for log in logs} == {20}  # INFO
    client = MlflowClient(uri)
    for column, name in ((3, "train_loss"), (4, "val_loss"), (5, "val_f1_macro")):
        logged = [m.value for m in sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)]
        shown = [float(m.group(column)) for m in matches]
        assert shown == pytest.approx(logged, rel=1e-3, abs=1e-4), name


def test_best_marks_the_epochs_early_stopping_counts_as_improved(cli_run):
    from mlflow import MlflowClient

    run, uri, _ = cli_run
    logs = epoch_lines(flow_run_logs(run.data.tags["prefect.flow_run_id"], wanted=4))
    marked = [bool(epoch_pattern("val_f1_macro").match(log.message).group(6)) for log in logs]
    history = [m.value for m in sorted(MlflowClient(uri).get_metric_history(run.info.run_id, "val_f1_macro"),
                                       key=lambda m: m.step)]
    improved = [value > max(history[:i], default=float("-inf")) for i, value in enumerate(history)]
    assert marked == improved and marked[0]


def test_the_console_of_fuseflow_run_shows_each_epoch_line_once(cli_run):
    _, _, output = cli_run
    for epoch in range(1, 5):
        assert len(re.findall(rf"epoch {epoch}/4  train_loss", output)) == 1, output
    assert not re.search(r"epochs\s+[━╸╺]", output), output  # no progress bar drawn beside the lines


# ------------------------------------------------------------------------------------------------- HF Trainer

def test_hf_trainer_epochs_reach_the_flow_run_logs(prefect_harness, tmp_path):
    from flows.pipeline import run_pipeline
    from tests.support.text_helpers import spam_project, text_pipelines

    spam_project(tmp_path, n=60)
    path = write_pipelines(tmp_path, text_pipelines(tmp_path / "spam.csv", tmp_path / "tokenizer", "hf_trainer", 2,
                                                    name="spam-progress"))
    with tracking_uri_env(tmp_path) as uri:
        run_pipeline("spam-progress", None, str(path))
        run = pipeline_run(uri)
    logs = epoch_lines(flow_run_logs(run.data.tags["prefect.flow_run_id"], wanted=2))
    matches = [epoch_pattern("val_accuracy").match(log.message) for log in logs]
    assert all(matches) and [int(m.group(1)) for m in matches] == [1, 2], [log.message for log in logs]
    assert all(log.task_run_id is not None for log in logs)  # the training task's logger


# ------------------------------------------------------------------------------------------------- DDP

def test_ddp_rank_zero_epochs_reach_the_flow_run_logs_once(prefect_harness, tmp_path):
    from flows.pipeline import run_pipeline

    text = TINY_IRIS.replace("      epochs: 4\n",
                             "      epochs: 2\n      distributed: {nproc_per_node: 2, backend: gloo}\n")
    path = write_pipelines(tmp_path, text)
    with tracking_uri_env(tmp_path) as uri:
        run_pipeline("iris-tiny", None, str(path))
        run = pipeline_run(uri)
    logs = flow_run_logs(run.data.tags["prefect.flow_run_id"], wanted=2)
    matches = [epoch_pattern("val_accuracy").match(log.message) for log in epoch_lines(logs)]
    assert all(matches) and [int(m.group(1)) for m in matches] == [1, 2], [log.message for log in logs]
    assert not any("fuseflow-epoch" in log.message for log in logs)  # the launcher's marker is stripped


# ------------------------------------------------------------------------------------------------- RunProgress

def read_artifact(artifact_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[artifact_id])))
    return artifact


def test_progress_artifact_reaches_100_after_n_updates_from_concurrent_threads(prefect_harness):
    from prefect import flow

    from flows.progress import RunProgress

    seen = {}

    @flow(name="progress-test")
    def trials(total: int) -> None:
        from prefect.runtime import flow_run

        progress = RunProgress("Test Trials", total, "sweep trials of test")
        seen["progress"], seen["flow_run_id"] = progress, flow_run.id
        seen["start"] = read_artifact(progress.artifact_id)
        progress.advance(note="last: trial-0 finished")
        seen["one"] = read_artifact(progress.artifact_id)
        barrier = threading.Barrier(total - 1)

        def finish_one() -> None:
            barrier.wait()
            progress.advance()

        threads = [threading.Thread(target=finish_one) for _ in range(total - 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    trials(8)
    progress = seen["progress"]
    assert progress.key == "test-trials"
    assert seen["start"].type == "progress" and float(seen["start"].data) == 0.0
    assert str(seen["start"].flow_run_id) == str(seen["flow_run_id"])
    assert float(seen["one"].data) == 12.5
    assert seen["one"].description == "sweep trials of test: 1 of 8 done (last: trial-0 finished)"
    final = read_artifact(progress.artifact_id)
    assert float(final.data) == 100.0 and progress.done == 8
    assert final.description == "sweep trials of test: 8 of 8 done"


def test_progress_feed_advances_as_each_job_ends(prefect_harness):
    from flows.nested import ListFeed, NestedJob, NestedOutcome
    from flows.progress import ProgressFeed, RunProgress

    jobs = [NestedJob(f"member-{i}", pipeline=None) for i in range(3)]
    progress = RunProgress("fusion-members", 3, "fusion members")
    feed = ProgressFeed(ListFeed(jobs), progress)
    first = feed.next_job()
    feed.job_done(first, NestedOutcome(first.key, error="ValueError: broke"))
    assert read_artifact(progress.artifact_id).description == "fusion members: 1 of 3 done (last: member-0 failed)"
    while (job := feed.next_job()) is not None:
        feed.job_done(job, NestedOutcome(job.key))
    assert float(read_artifact(progress.artifact_id).data) == 100.0
    assert [o.key for o in feed.feed.outcomes] == ["member-0", "member-1", "member-2"]


def test_a_refused_progress_artifact_warns_once_and_never_raises(prefect_harness, caplog):
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    from flows.progress import RunProgress

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api", PREFECT_CLIENT_MAX_RETRIES: 0}), \
            caplog.at_level("WARNING", logger="fuseflow"):
        progress = RunProgress("refused", 2, "trials")
        progress.advance()
        progress.advance()
    assert progress.artifact_id is None and progress.done == 2
    warnings = [r for r in caplog.records if "progress artifact refused not updated" in r.getMessage()]
    assert len(warnings) == 1


# ------------------------------------------------------------------------------------------------- sweeps, fusions

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
SWEEP = TINY_IRIS.replace("epochs: 4", "epochs: 2") + """\
    sweep:
      parameters:
        train.optimizer.lr: [0.01, 0.02, 0.05]
      sampler: grid
      metric: val_loss
"""
FUSION = """\
defaults:
  seed: 3
pipelines:
  digits-tiny:
    data: {source: sklearn, name: digits}
    preprocess: [standardize]
    model: {type: mlp, hidden: [16]}
    train: {backend: torch, epochs: 2, batch_size: 64, optimizer: {name: adam, lr: 0.01}}
    evaluate: {confusion_matrix: false, learning_curve: false}
  fusion-pair:
    fusion:
      members:
        - pipeline: digits-tiny
          set: {seed: 1}
        - pipeline: digits-tiny
          set: {seed: 2}
      method: mean
      require_gain: false
"""


def _wired(body: str) -> bool:
    return "flows.progress" in (ROOT / "flows" / "bodies" / body).read_text(encoding="utf-8")


def flow_run_artifact(flow_run_id: str, key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


def _parent(uri: str):
    return next(r for r in runs_of(uri) if "mlflow.parentRunId" not in r.data.tags)


@pytest.mark.skipif(not _wired("sweep.py"), reason="flows/bodies/sweep.py does not create the progress artifact yet")
def test_a_sweep_shows_its_trials_done_as_a_progress_artifact(prefect_harness, tmp_path):
    from flows.pipeline import run_pipeline

    path = write_pipelines(tmp_path, SWEEP)
    with tracking_uri_env(tmp_path) as uri:
        run_pipeline("iris-tiny", None, str(path))
        parent = _parent(uri)
    (artifact,) = flow_run_artifact(parent.data.tags["prefect.flow_run_id"], "iris-tiny-trials")
    assert artifact.type == "progress" and float(artifact.data) == 100.0
    assert artifact.description.startswith("sweep trials of iris-tiny: 3 of 3 done (last: trial-")


@pytest.mark.skipif(not _wired("fusion.py"), reason="flows/bodies/fusion.py does not create the progress artifact yet")
def test_a_fusion_shows_its_members_trained_as_a_progress_artifact(prefect_harness, tmp_path):
    from flows.pipeline import run_pipeline

    path = write_pipelines(tmp_path, FUSION)
    with tracking_uri_env(tmp_path) as uri:
        run_pipeline("fusion-pair", None, str(path))
        parent = _parent(uri)
    (artifact,) = flow_run_artifact(parent.data.tags["prefect.flow_run_id"], "fusion-pair-members")
    assert float(artifact.data) == 100.0
    assert artifact.description.startswith("fusion members of fusion-pair: 2 of 2 done (last: ")
