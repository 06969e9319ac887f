"""The `sweep:` and `runner:` sections: trial generation, every bad input as a located error, and the ranking and
report helpers (no training here)."""
from __future__ import annotations

import math
import types

import pytest

from flows.cli import main
from tasks.sweep.config import SweepConfig
from tasks.sweep.report import TrialResult, _scale, markdown, metric_of_run, ranked, table_rows
from tests.support.helpers import TINY_IRIS, write_pipelines

SWEEP = """\
    sweep:
      parameters:
        train.optimizer.lr: [0.01, 0.05]
        model.hidden: [[8], [16]]
      metric: val_accuracy
"""


def _sweep_yaml(sweep: str = SWEEP, extra: str = "") -> str:
    return TINY_IRIS + sweep + extra


def _run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def test_grid_runs_every_combination_first_key_slowest():
    sweep = SweepConfig.model_validate({"parameters": {"a": [1, 2], "b": ["x", "y", "z"]}, "metric": "val_loss"})
    assert not sweep.is_random and sweep.trial_count == 6
    assert sweep.assignments(seed=0) == [{"a": a, "b": b} for a in (1, 2) for b in ("x", "y", "z")]
    assert sweep.resolved_mode == "min"


def test_random_search_draws_reproducibly_within_bounds():
    sweep = SweepConfig.model_validate({
        "parameters": {"lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-1},
                       "dropout": {"distribution": "uniform", "low": 0.0, "high": 0.5},
                       "opt": {"distribution": "choice", "values": ["adam", "sgd"]}, "width": [8, 16]},
        "trials": 40, "metric": "val_accuracy"})
    draws = sweep.assignments(seed=3)
    assert len(draws) == 40 and draws == sweep.assignments(seed=3) and draws != sweep.assignments(seed=4)
    assert all(1e-4 <= d["lr"] < 1e-1 and 0 <= d["dropout"] < 0.5 for d in draws)
    assert {d["opt"] for d in draws} == {"adam", "sgd"} and {d["width"] for d in draws} == {8, 16}
    # log-uniform: about as many draws below 1e-2.5 as above (a uniform draw would put ~97% above)
    below = sum(math.log10(d["lr"]) < -2.5 for d in draws)
    assert 8 <= below <= 32
    assert sweep.resolved_mode == "max"


def test_valid_sweep_validates_and_lists_as_sweep(tmp_path, capsys):
    path = write_pipelines(tmp_path, _sweep_yaml())
    code, out = _run_cli(capsys, "validate", "--file", str(path))
    assert code == 0, out
    code, out = _run_cli(capsys, "list", "--file", str(path))
    assert code == 0 and "sweep" in out


BAD = [
    ("grid-with-trials", SWEEP + "      trials: 3\n", ["pipelines.yaml:15:", "sweep", "remove `trials`", "(4 here)"]),
    ("random-without-trials", SWEEP.replace("[0.01, 0.05]", "{distribution: loguniform, low: 0.001, high: 0.1}"),
     ["sweep", "needs `trials: N`"]),
    ("unknown-distribution", SWEEP.replace("[0.01, 0.05]", "{distribution: loguniorm, low: 0.001, high: 0.1}"),
     ["pipelines.yaml:17:", "sweep.parameters.train.optimizer.lr", "did you mean 'loguniform'"]),
    ("loguniform-at-zero", SWEEP.replace("[0.01, 0.05]", "{distribution: loguniform, low: 0, high: 0.1}")
     + "      trials: 2\n", ["sweep.parameters.train.optimizer.lr", "low` > 0"]),
    ("unknown-metric", SWEEP.replace("val_accuracy", "val_acuracy"),
     ["pipelines.yaml:19:", "sweep.metric", "did you mean 'val_accuracy'"]),
    ("fuse-top-too-large", SWEEP + "      fuse_top: 5\n", ["sweep", "fuse_top (5)", "4 trials"]),
    ("forbidden-key", SWEEP.replace("model.hidden", "tracking.experiment"),
     ["sweep.parameters", "cannot change `tracking`"]),
    ("unknown-parameter-key", SWEEP.replace("model.hidden", "model.hiden"),
     ["pipelines.yaml:16:", "sweep.parameters", "trial-0", "model.hiden", "did you mean 'hidden'"]),
    ("invalid-trial-value", SWEEP.replace("[0.01, 0.05]", "[0.01, -0.05]"),
     ["pipelines.yaml:16:", "sweep.parameters", "trial-2 (train.optimizer.lr=-0.05", "greater than 0"]),
    ("unknown-sweep-key", SWEEP + "      mode: maximum\n", ["sweep.mode", "'max' or 'min'"]),
    ("runner-address-on-threads", SWEEP + "    runner: {type: thread, address: 'tcp://127.0.0.1:8786'}\n",
     ["runner", "set `type: dask` or `type: ray`"]),
    ("runner-unknown-type", SWEEP + "    runner: {type: daks}\n", ["runner.type", "did you mean 'dask'"]),
    ("runner-bad-address", SWEEP + "    runner: {type: dask, address: 'http://scheduler'}\n",
     ["runner", "not a dask address", "tcp://HOST:PORT"]),
    ("metric-not-logged-per-epoch", SWEEP.replace("val_accuracy", "val_rmse"),
     ["sweep.metric", "unknown trial metric 'val_rmse'", "val_r2"]),
    ("test-metric-not-evaluated", SWEEP.replace("val_accuracy", "test_log_loss") + "    evaluate: {metrics: [accuracy]}\n",
     ["sweep.metric", "'test_log_loss' is not among evaluate.metrics (accuracy)"]),
    ("soup-over-swept-architectures", SWEEP + "      fuse_top: 2\n      fuse_method: soup_uniform\n",
     ["sweep.fuse_method", "the sweep varies model.hidden", "output-level method"]),
]


@pytest.mark.parametrize("sweep,fragments", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_sweep_is_a_located_error(sweep, fragments, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_pipelines(tmp_path, _sweep_yaml(sweep))
    code, out = _run_cli(capsys, "validate", "--file", str(path))
    assert code == 2, out
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} not in:\n{out}"
    assert "Traceback" not in out
    assert not (tmp_path / "mlruns").exists()


def test_regression_sweep_cannot_fuse_or_rank_by_a_class_metric(tmp_path, capsys):
    text = _sweep_yaml(SWEEP + "      fuse_top: 2\n").replace("name: iris}", "name: diabetes, task: regression}")
    code, out = _run_cli(capsys, "validate", "--file", str(write_pipelines(tmp_path, text)))
    assert code == 2 and "'val_accuracy' is not logged by a regression pipeline" in out
    assert "a regression sweep cannot fuse_top" in out, out


def test_trials_share_one_split_and_keep_string_values(tmp_path):
    """Sweeping `seed` varies initialisation, not the data split (trials are ranked on one validation split); a
    quoted string stays a string (it is not read as YAML again: "on" would become True)."""
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve

    text = _sweep_yaml(SWEEP.replace("model.hidden: [[8], [16]]", "seed: [1, 2]")
                       .replace("train.optimizer.lr: [0.01, 0.05]", 'description: ["on", "1.10"]'))
    trials = resolve(load_project(write_pipelines(tmp_path, text)), "iris-tiny").trials
    assert [(t.spec.seed, t.spec.data.split.seed, t.spec.description) for t in trials] == [
        (1, 7, "on"), (2, 7, "on"), (1, 7, "1.10"), (2, 7, "1.10")]
    swept = _sweep_yaml(SWEEP.replace("model.hidden: [[8], [16]]", "data.split.seed: [1, 2]"))
    trials = resolve(load_project(write_pipelines(tmp_path, swept)), "iris-tiny").trials
    assert [t.spec.data.split.seed for t in trials] == [1, 2, 1, 2]


def test_missing_runner_package_names_the_install(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "prefect_ray" else real(name, *a))
    path = write_pipelines(tmp_path, _sweep_yaml(extra="    runner: {type: ray}\n"))
    code, out = _run_cli(capsys, "validate", "--file", str(path))
    assert code == 2 and "runner.type" in out and "pip install 'fuseflow[ray]'" in out, out


def test_sweep_cannot_be_a_fusion_member(tmp_path, capsys):
    text = _sweep_yaml() + """\
  iris-fusion:
    fusion:
      members: [{pipeline: iris-tiny}, {pipeline: iris-tiny, set: {seed: 2}}]
      method: mean
"""
    path = write_pipelines(tmp_path, text)
    code, out = _run_cli(capsys, "validate", "--file", str(path))
    assert code == 2 and "'iris-tiny' is a sweep" in out, out


def test_ranking_skips_failed_and_nan_trials_and_breaks_ties_by_index():
    results = [TrialResult(0, {"a": 1}, "r0", "FINISHED", 0.8), TrialResult(1, {"a": 2}, "r1", "FAILED", None, error="boom"),
               TrialResult(2, {"a": 3}, "r2", "FINISHED", 0.9), TrialResult(3, {"a": 4}, "r3", "FINISHED", 0.9),
               TrialResult(4, {"a": 5}, "r4", "FINISHED", float("nan"))]
    assert [r.index for r in ranked(results, "max")] == [2, 3, 0]
    assert [r.index for r in ranked(results, "min")] == [0, 2, 3]
    rows = table_rows(results, "val_accuracy", ranked(results, "max"))
    assert [r["rank"] for r in rows] == [3, None, 1, 2, None] and rows[1]["error"] == "boom"
    text = markdown(rows, "val_accuracy", "max")
    assert text.index("| 2 | 1 | FINISHED") < text.index("| 3 | 2 | FINISHED") < text.index("| 1 |  | FAILED")


def test_trial_metric_is_read_at_the_best_epoch():
    history = [types.SimpleNamespace(step=s, value=v) for s, v in ((1, 0.5), (2, 0.9), (3, 0.7))]
    client = types.SimpleNamespace(get_metric_history=lambda run_id, key: history)
    metrics = {"val_accuracy": 0.7, "best_epoch": 2.0, "test_accuracy": 0.8}
    run = types.SimpleNamespace(info=types.SimpleNamespace(run_id="r"), data=types.SimpleNamespace(
        metrics=metrics, params={"train.early_stopping.restore_best": "True"}))
    assert metric_of_run(client, run, "val_accuracy") == 0.9  # restore_best kept epoch 2's weights
    assert metric_of_run(client, run, "test_accuracy") == 0.8
    assert metric_of_run(client, run, "val_loss") is None
    last_kept = types.SimpleNamespace(info=run.info, data=types.SimpleNamespace(
        metrics=metrics, params={"train.early_stopping.restore_best": "False"}))
    assert metric_of_run(client, last_kept, "val_accuracy") == 0.7  # the model keeps the last epoch's weights


def test_plot_scale_handles_numbers_logs_and_categories():
    ys, labels = _scale([1e-4, 1e-3, 1e-1])
    assert ys == pytest.approx([0.0, 1 / 3, 1.0])  # spans 3 decades: log axis
    ys, labels = _scale([[8], [16], [8]])
    assert ys == [0.0, 1.0, 0.0] and [t for _, t in labels] == ["[8]", "[16]"]


def test_dataset_insert_race_is_retried():
    from mlflow.exceptions import MlflowException

    from tasks.tracking.logger import RunLogger

    calls = []

    def log_inputs(run_id, datasets):
        calls.append(run_id)
        if len(calls) == 1:
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id")

    logger = RunLogger.__new__(RunLogger)
    logger.run_id, logger.client = "r1", types.SimpleNamespace(log_inputs=log_inputs)
    dataset = types.SimpleNamespace(_to_mlflow_entity=lambda: _entity())
    logger.log_dataset(dataset, "training")
    assert calls == ["r1", "r1"]


def _entity():
    from mlflow.entities import Dataset

    return Dataset(name="d", digest="x", source_type="code", source="{}")
