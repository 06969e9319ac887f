"""The `sweep:` and `runner:` sections: trial generation, every bad input as a located error, and the ranking and
report helpers (no training here)."""
from __future__ import annotations

import math
import types

import pytest

from flows.cli import main
from tasks.sweep.config import SweepConfig
from tasks.sweep.report import TrialResult, markdown, metric_of_run, ranked, table_rows
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


def test_todays_grid_and_random_sweeps_give_the_same_trials_as_before():
    """The values below are what the hand-written search (before Optuna) drew for this YAML and seed: a grid (the
    default when every parameter is a list) and `sampler: random` keep them, and so do the random trials that open
    a TPE search."""
    grid = SweepConfig.model_validate({"parameters": {"a": [1, 2], "b": [[8], [16]]}, "metric": "val_loss"})
    assert grid.resolved_sampler.name == "grid"
    assert grid.assignments(0) == [{"a": 1, "b": [8]}, {"a": 1, "b": [16]}, {"a": 2, "b": [8]}, {"a": 2, "b": [16]}]
    before = [{"train.optimizer.lr": 0.0035311169138214113, "model.dropout": 0.1316635319256157, "model.hidden": [128]},
              {"train.optimizer.lr": 0.002481624443014988, "model.dropout": 0.02825320436629486,
               "model.hidden": [256, 128]},
              {"train.optimizer.lr": 0.008938089586343602, "model.dropout": 0.22834191059710587,
               "model.hidden": [256, 128]}]
    parameters = {"train.optimizer.lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2},
                  "model.dropout": {"distribution": "uniform", "low": 0.0, "high": 0.3},
                  "model.hidden": {"distribution": "choice", "values": [[64], [128], [256, 128]]}}
    random = SweepConfig.model_validate({"parameters": parameters, "trials": 3, "metric": "val_loss",
                                         "sampler": "random"})
    assert random.assignments(seed=42) == before
    tpe = SweepConfig.model_validate({"parameters": parameters, "trials": 3, "metric": "val_loss"})
    assert tpe.resolved_sampler.name == "tpe" and tpe.resolved_sampler.startup_trials >= 3
    assert tpe.assignments(seed=42, count=3) == before


def test_samplers_and_pruners_build_optunas_objects():
    import optuna

    from tasks.registry import PRUNERS, SAMPLERS

    parameters = {"lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-1}}
    built = {name: SweepConfig.model_validate(
        {"parameters": {"lr": [0.1, 0.2]}, "metric": "val_loss", "sampler": name} if name == "grid" else
        {"parameters": parameters, "trials": 4, "metric": "val_loss", "sampler": name}).resolved_sampler.build(1)
        for name in SAMPLERS.names()}
    assert set(built) >= {"grid", "random", "tpe", "cmaes", "gp"}
    assert isinstance(built["tpe"], optuna.samplers.TPESampler) and isinstance(built["gp"], optuna.samplers.GPSampler)
    assert isinstance(built["cmaes"], optuna.samplers.CmaEsSampler)
    pruners = {name: SweepConfig.model_validate({"parameters": parameters, "trials": 4, "metric": "val_loss",
                                                 "pruner": name}).pruner.build(20) for name in PRUNERS.names()}
    assert isinstance(pruners["median"], optuna.pruners.MedianPruner)
    assert isinstance(pruners["hyperband"], optuna.pruners.HyperbandPruner)
    assert isinstance(pruners["successive_halving"], optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(pruners["none"], optuna.pruners.NopPruner)
    options = SweepConfig.model_validate({"parameters": parameters, "trials": 4, "metric": "val_loss",
                                          "pruner": {"median": {"warmup_epochs": 5, "startup_trials": 2}}}).pruner
    assert (options.warmup_epochs, options.startup_trials) == (5, 2)


def test_int_distribution_draws_integers_on_its_step():
    import numpy as np

    from tasks.sweep.space import IntRange

    steps = IntRange.model_validate({"distribution": "int", "low": 16, "high": 256, "step": 16})
    rng = np.random.default_rng(0)
    draws = [steps.sample(rng) for _ in range(200)]
    assert all(isinstance(d, int) and 16 <= d <= 256 and d % 16 == 0 for d in draws) and len(set(draws)) > 8
    logs = IntRange.model_validate({"distribution": "int", "low": 1, "high": 1000, "log": True})
    draws = [logs.sample(rng) for _ in range(400)]
    assert all(1 <= d <= 1000 for d in draws) and 100 < sum(d < 32 for d in draws) < 300  # log-spaced
    assert steps.to_optuna().step == 16 and logs.to_optuna().log


def test_valid_sweep_validates_and_lists_as_sweep(tmp_path, capsys):
    path = write_pipelines(tmp_path, _sweep_yaml())
    code, out = _run_cli(capsys, "validate", "--file", str(path))
    assert code == 0, out
    code, out = _run_cli(capsys, "list", "--file", str(path))
    assert code == 0 and "sweep" in out


BAD = [
    ("grid-with-trials", SWEEP + "      trials: 3\n", ["pipelines.yaml:15:", "sweep", "remove `trials`", "(4 here)"]),
    ("random-without-trials", SWEEP.replace("[0.01, 0.05]", "{distribution: loguniform, low: 0.001, high: 0.1}"),
     ["sweep", "a tpe search needs its budget, `trials: N`"]),
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
    ("test-metric-ranks", SWEEP.replace("val_accuracy", "test_accuracy"),
     ["pipelines.yaml:19:", "sweep.metric", "cannot rank trials by a test metric", "rank by 'val_accuracy'"]),
    ("unknown-sampler", SWEEP + "      sampler: tpee\n      trials: 3\n",
     ["pipelines.yaml:20:", "sweep.sampler", "did you mean 'tpe'"]),
    ("unknown-pruner", SWEEP + "      sampler: random\n      trials: 3\n      pruner: medain\n",
     ["sweep.pruner", "did you mean 'median'"]),
    ("pruner-with-grid", SWEEP + "      pruner: median\n", ["sweep", "would leave holes", "sampler: tpe"]),
    ("pruner-unknown-option", SWEEP + "      sampler: tpe\n      trials: 3\n      pruner: {median: {warmup: 2}}\n",
     ["sweep.pruner.median.warmup", "did you mean 'warmup_epochs'"]),
    ("uniform-low-above-high", SWEEP.replace("[0.01, 0.05]", "{distribution: uniform, low: 0.5, high: 0.1}")
     + "      trials: 2\n", ["sweep.parameters.train.optimizer.lr", "`low` (0.5) must be below `high` (0.1)"]),
    ("int-low-equals-high", SWEEP.replace("model.hidden: [[8], [16]]", "train.epochs: {distribution: int, low: 3, high: 3}")
     + "      trials: 2\n", ["sweep.parameters.train.epochs", "`low` (3) must be below `high` (3)"]),
    ("int-off-its-step", SWEEP.replace("model.hidden: [[8], [16]]",
                                       "train.epochs: {distribution: int, low: 2, high: 9, step: 2}") + "      trials: 2\n",
     ["sweep.parameters.train.epochs", "multiple of `step` (2)"]),
    ("int-given-a-float", SWEEP.replace("model.hidden: [[8], [16]]", "train.epochs: {distribution: int, low: 2.5, high: 9}")
     + "      trials: 2\n", ["sweep.parameters.train.epochs", "low", "integer"]),
    ("grid-too-large", SWEEP.replace("model.hidden: [[8], [16]]", "seed: [" + ", ".join(map(str, range(200))) + "]\n"
                                     "        model.dropout: [" + ", ".join(str(i / 1000) for i in range(100)) + "]"),
     ["sweep", "40000 combinations", "limit of 10000"]),
    ("trials-is-a-bool", SWEEP + "      sampler: random\n      trials: true\n", ["sweep.trials", "got `true` (a boolean)"]),
    ("trials-over-the-limit", SWEEP + "      sampler: random\n      trials: 20000\n", ["sweep.trials", "10000"]),
    ("cmaes-over-a-choice", SWEEP + "      sampler: cmaes\n      trials: 4\n",
     ["sweep", "models numeric ranges only", "model.hidden"]),
    ("distribution-with-grid", SWEEP.replace("[0.01, 0.05]", "{distribution: uniform, low: 0.01, high: 0.1}")
     + "      sampler: grid\n", ["sweep", "has a distribution", "train.optimizer.lr"]),
    ("timeout-not-positive", SWEEP + "      sampler: random\n      trials: 3\n      timeout: 0\n",
     ["sweep.timeout", "greater than 0"]),
    ("pruned-distributed-trials", SWEEP + "      sampler: random\n      trials: 2\n      pruner: median\n",
     ["sweep.pruner", "train.distributed", "cannot be pruned"]),
    ("invalid-range-end", SWEEP.replace("[0.01, 0.05]", "{distribution: uniform, low: -0.1, high: 0.1}")
     + "      trials: 3\n", ["sweep.parameters", "the values (train.optimizer.lr=-0.1", "greater than 0"]),
    ("storage-not-a-database", SWEEP + "      sampler: random\n      trials: 2\n      storage: ./optuna.db\n",
     ["sweep.storage", "not a database URL", "sqlite:////"]),
    ("soup-over-swept-architectures", SWEEP + "      fuse_top: 2\n      fuse_method: soup_uniform\n",
     ["sweep.fuse_method", "the sweep varies model.hidden", "output-level method"]),
]


@pytest.mark.parametrize("sweep,fragments", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_sweep_is_a_located_error(sweep, fragments, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = _sweep_yaml(sweep)
    if "cannot be pruned" in fragments:
        text = text.replace("    sweep:", "      distributed: {nproc_per_node: 2}\n    sweep:")
    path = write_pipelines(tmp_path, text)
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
