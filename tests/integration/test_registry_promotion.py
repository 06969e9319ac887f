"""Registration and promotion: `tracking.register` adds a model version per run, `tracking.promote` moves the alias
only to a strictly better version, and the decision (with both figures) is a run tag and a Prefect artifact."""
from __future__ import annotations

import pytest

from tasks.errors import ConfigError
from tasks.tracking.tags import PROMOTION as TAG_PROMOTION, REGISTERED_MODEL as TAG_REGISTERED
from tasks.tracking.promotion import PromoteConfig, is_better, register_and_promote
from tests.support.helpers import TINY_IRIS, write_pipelines


def _tracking(name: str, **promote):
    from tasks.pipeline.spec import TrackingConfig

    return TrackingConfig(register=name, promote=promote or None)


def _fake_run(client, experiment_id: str, value: float | None, metric: str = "test_f1_macro") -> str:
    """A finished run with one metric and a `model/MLmodel` artifact (what registration looks for)."""
    run = client.create_run(experiment_id)
    if value is not None:
        client.log_metric(run.info.run_id, metric, value)
    client.log_text(run.info.run_id, "flavors: {}\n", "model/MLmodel")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """One sqlite store for the module (creating one takes seconds); each test registers its own model name."""
    from mlflow import MlflowClient

    from tasks.tracking.logger import artifact_root_for

    uri = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"
    client = MlflowClient(uri)
    return client, client.create_experiment("promote", artifact_location=artifact_root_for(uri)), uri


@pytest.fixture
def store(registry, request):
    """(client, experiment id, tracking URI, a registered model name of this test's own)."""
    return (*registry, request.node.name.split("[")[0].removeprefix("test_")[:60])


def _champion(client, name: str) -> str:
    return str(client.get_model_version_by_alias(name, "champion").version)


def test_is_better_is_strict_and_follows_the_mode():
    assert is_better(0.9, 0.8, "max") and not is_better(0.8, 0.9, "max") and not is_better(0.8, 0.8, "max")
    assert is_better(0.1, 0.2, "min") and not is_better(0.2, 0.1, "min") and not is_better(0.1, 0.1, "min")


def test_worse_run_keeps_the_champion_and_better_run_moves_it(store):
    client, exp, uri, name = store
    tracking = _tracking(name, metric="test_f1_macro")
    first = _fake_run(client, exp, 0.80)
    d1 = register_and_promote(tracking, first, f"runs:/{first}/model", uri)
    assert (d1.version, d1.promoted, d1.champion_version) == ("1", True, None)
    assert _champion(client, name) == "1"

    worse = _fake_run(client, exp, 0.75)
    d2 = register_and_promote(tracking, worse, f"runs:/{worse}/model", uri)
    assert (d2.version, d2.promoted, d2.champion_version, d2.champion_value, d2.value) == ("2", False, "1", 0.80, 0.75)
    assert _champion(client, name) == "1", "a worse run must leave the champion where it was"
    assert "kept @champion on version 1" in d2.message and "0.7500" in d2.message and "0.8000" in d2.message

    tie = _fake_run(client, exp, 0.80)
    assert not register_and_promote(tracking, tie, f"runs:/{tie}/model", uri).promoted
    assert _champion(client, name) == "1", "a tie keeps the current champion"

    better = _fake_run(client, exp, 0.85)
    d4 = register_and_promote(tracking, better, f"runs:/{better}/model", uri)
    assert (d4.version, d4.promoted, d4.champion_version) == ("4", True, "1")
    assert _champion(client, name) == "4"
    tags = client.get_run(better).data.tags
    assert tags[TAG_REGISTERED] == f"{name}/4"
    assert tags[TAG_PROMOTION].startswith(f"promoted {name} version 4") and "0.8500 > 0.8000" in tags[TAG_PROMOTION]
    assert client.get_run(worse).data.tags[TAG_PROMOTION] == d2.message
    version = client.get_model_version(name, "4")
    assert version.run_id == better and version.tags["test_f1_macro"] == "0.85"
    assert version.source.endswith(f"{better}/artifacts/model")


def test_mode_min_promotes_the_lower_value(store):
    client, exp, uri, name = store
    tracking = _tracking(name, metric="test_rmse", mode="min", alias="best")
    a = _fake_run(client, exp, 2.0, "test_rmse")
    b = _fake_run(client, exp, 3.0, "test_rmse")
    c = _fake_run(client, exp, 1.5, "test_rmse")
    results = [register_and_promote(tracking, r, f"runs:/{r}/model", uri).promoted for r in (a, b, c)]
    assert results == [True, False, True]
    assert client.get_model_version_by_alias(name, "best").run_id == c


def test_register_without_promote_moves_no_alias(store):
    from mlflow.exceptions import MlflowException

    from tasks.pipeline.spec import TrackingConfig

    client, exp, uri, name = store
    run = _fake_run(client, exp, 0.5)
    decision = register_and_promote(TrackingConfig(register=name), run, f"runs:/{run}/model", uri)
    assert (decision.version, decision.promoted) == ("1", False)
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(name, "champion")
    assert register_and_promote(TrackingConfig(), run, f"runs:/{run}/model", uri) is None


def test_a_metric_the_run_did_not_log_fails_before_registering(store):
    client, exp, uri, name = store
    run = _fake_run(client, exp, 0.5)
    with pytest.raises(RuntimeError, match=r"tracking.promote.metric 'test_r2' was not logged.*test_f1_macro"):
        register_and_promote(_tracking(name, metric="test_r2"), run, f"runs:/{run}/model", uri)
    assert name not in [m.name for m in client.search_registered_models()]


@pytest.mark.parametrize("tracking, message", [
    ("{promote: {metric: test_f1_macro}}", "tracking: `promote` moves an alias of a registered model: set `register"),
    ("{register: a/b}", "tracking.register: invalid registered model name 'a/b'"),
    ("{register: m, promote: {metric: x, alias: v3}}", "tracking.promote.alias: invalid alias 'v3'"),
    ("{register: m, promote: {metric: x, mode: best}}", "tracking.promote.mode: expected one of 'max' or 'min'"),
    ("{register: m, promote: {metrc: x}}", "unknown key 'metrc'; did you mean 'metric'?"),
])
def test_bad_registry_keys_are_config_errors(project_dir, tracking, message):
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve

    path = write_pipelines(project_dir, TINY_IRIS + f"    tracking: {tracking}\n")
    with pytest.raises(ConfigError) as err:
        resolve(load_project(path), "iris-tiny")
    assert message in str(err.value)
    assert PromoteConfig(metric="m").alias == "champion"


def test_flow_registers_promotes_and_reports(project_dir, tracking_uri, prefect_harness):
    """Three real runs: champion after the first, kept by a worse second, moved by a better third; the Prefect
    artifact of each flow run carries the decision with both figures."""
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client

    from flows.pipeline import run_pipeline

    path = write_pipelines(project_dir, TINY_IRIS + "    tracking: {register: iris-clf, promote: {metric: test_f1_macro}}\n")
    runs = [run_pipeline("iris-tiny", overrides, str(path)) for overrides in
            ({"train.epochs": 2, "train.optimizer.lr": 0.005}, {"train.epochs": 1, "train.optimizer.lr": 0.0001},
             {"train.epochs": 30})]
    f1 = [r.metrics["test_f1_macro"] for r in runs]
    assert f1[1] < f1[0] < f1[2], f"fixture precondition (seeded training): worse, then better runs; got {f1}"
    promoted = [r.registry.promoted for r in runs]
    assert promoted == [True, False, True]
    client = MlflowClient(tracking_uri)
    assert client.get_model_version_by_alias("iris-clf", "champion").run_id == runs[2].run_id
    assert runs[1].registry.champion_value == pytest.approx(f1[0])

    flow_run_id = client.get_run(runs[1].run_id).data.tags["prefect.flow_run_id"]
    with get_client(sync_client=True) as prefect:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    [artifact] = [a for a in artifacts if a.key == "fuseflow-iris-tiny-metrics"]
    assert "kept @champion on version 1" in artifact.data
    assert f"| new: 2 | {f1[1]:.4f} |" in artifact.data and f"| @champion before: 1 | {f1[0]:.4f} |" in artifact.data
    assert f"| test_f1_macro | {f1[1]:.4f} |" in artifact.data


def test_two_promotions_at_once_do_not_both_move_the_alias(store, monkeypatch):
    """Both read the holder before either moved it: without a lock the worse one, moving last, would win."""
    import threading
    import time

    from tasks.tracking import promotion

    client, exp, uri, name = store
    tracking = _tracking(name, metric="test_f1_macro")
    base = _fake_run(client, exp, 0.50)
    register_and_promote(tracking, base, f"runs:/{base}/model", uri)
    better, worse = _fake_run(client, exp, 0.90), _fake_run(client, exp, 0.80)
    read_holder = promotion.current_holder
    pause = {better: 0.3, worse: 1.5}  # the worse run reads at once, then decides last
    local = threading.local()

    def slow_holder(*args):
        found = read_holder(*args)
        time.sleep(pause[local.run_id])
        return found

    monkeypatch.setattr(promotion, "current_holder", slow_holder)
    decisions = {}

    def promote(run_id, delay):
        local.run_id = run_id
        time.sleep(delay)
        decisions[run_id] = register_and_promote(tracking, run_id, f"runs:/{run_id}/model", uri)

    threads = [threading.Thread(target=promote, args=(better, 0.0)), threading.Thread(target=promote, args=(worse, 0.1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    holder = client.get_model_version_by_alias(name, "champion")
    assert holder.run_id == better
    assert decisions[better].promoted and not decisions[worse].promoted
    assert decisions[worse].champion_version == decisions[better].version  # it saw the first promotion
