"""Benchmark: one 4-trial grid sweep (digits MLP, 2 learning rates x 2 widths) with each task runner.

Variants: `runner: thread` with the trials one at a time (`max_concurrent: 1`), `thread` with all 4 at once,
`dask` with a local cluster of 2 worker processes, and `ray` with 2 (when prefect-ray is installed). Each is
`fuseflow run <pipeline> --no-cache` in a fresh process against one Prefect server started here, timed from start
to exit, interleaved in rotating order for `--rounds` rounds after an untimed warm-up of each. The table shows the
median wall time and the median of the trials' own training time (sum over trials of MLflow run end - start).

    python bench/bench_sweep.py              # 3 rounds, about 8 minutes here
    python bench/bench_sweep.py --rounds 5 --epochs 40
"""
from __future__ import annotations

import argparse
import importlib.util
import sys

from benchlib import PrefectServer, base_env, fuseflow_command, make_project, median, print_table, timed

SWEEP = """\
  sweep-RUNNAME:
    seed: 42
    data: {source: sklearn, name: digits}
    preprocess: [standardize]
    model: {type: mlp, hidden: [256, 256]}
    train: {backend: torch, epochs: EPOCHS, batch_size: 32, optimizer: {name: adamw, lr: 0.001}}
    sweep:
      parameters:
        train.optimizer.lr: [0.0005, 0.002]
        model.hidden: [[256, 256], [512, 256]]
      metric: val_accuracy
      MAXCONC
    runner: RUNNER
"""

VARIANTS = {
    "thread, 1 at a time": ("thread-seq", "{type: thread}", "max_concurrent: 1"),
    "thread, 4 at once": ("thread", "{type: thread}", "max_concurrent: 4"),
    "dask, 2 workers": ("dask", "{type: dask, workers: 2}", "max_concurrent: 4"),
    "ray, 2 workers": ("ray", "{type: ray, workers: 2}", "max_concurrent: 4"),
}


def trial_seconds(tracking_uri: str, experiment: str) -> float:
    """Sum over the latest sweep's trial runs of (end - start): the work the runner parallelised."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    parent = client.search_runs([exp.experiment_id], "tags.`fuseflow.sweep.metric` != ''", max_results=1,
                                order_by=["attributes.start_time DESC"])[0]
    trials = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return sum((t.info.end_time - t.info.start_time) / 1000 for t in trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=25)
    args = parser.parse_args()

    variants = {k: v for k, v in VARIANTS.items() if not k.startswith("ray") or importlib.util.find_spec("prefect_ray")}
    project = make_project()
    text = "".join(SWEEP.replace("RUNNAME", name).replace("RUNNER", runner).replace("MAXCONC", conc)
                   .replace("EPOCHS", str(args.epochs)) for name, runner, conc in variants.values())
    (project / "pipelines.yaml").write_text("pipelines:\n" + text, encoding="utf-8")
    (project / "prefect-server").mkdir()
    server = PrefectServer(project / "prefect-server")
    print(f"project {project}; Prefect server ready in {server.wait():.1f} s at {server.url}", flush=True)
    env = base_env(project, server.url)
    walls: dict[str, list[float]] = {name: [] for name in variants}
    work: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for name, (pipeline, _, _) in variants.items():  # warm-up: databases, bytecode caches
            timed([*fuseflow_command(), "run", f"sweep-{pipeline}", "--no-cache"], project, env)
        names = list(variants)
        for round_no in range(args.rounds):
            order = names[round_no % len(names):] + names[:round_no % len(names)]
            for name in order:
                pipeline = variants[name][0]
                seconds, _ = timed([*fuseflow_command(), "run", f"sweep-{pipeline}", "--no-cache"], project, env)
                walls[name].append(seconds)
                work[name].append(trial_seconds(env["MLFLOW_TRACKING_URI"], f"sweep-{pipeline}"))
            print(f"round {round_no + 1}: " + ", ".join(f"{n} {walls[n][-1]:.1f} s" for n in names), flush=True)
    finally:
        server.stop()
    base = median(walls[names[0]])
    rows = [[name, f"{median(walls[name]):.1f}", f"{base / median(walls[name]):.2f}x", f"{median(work[name]):.1f}",
             " ".join(f"{w:.1f}" for w in walls[name])] for name in names]
    print_table(f"4-trial sweep, digits MLP {args.epochs} epochs, medians of {args.rounds} interleaved runs",
                ["runner", "wall s", "speed-up vs 1 at a time", "sum of trial run s", "all wall s"], rows)


if __name__ == "__main__":
    sys.exit(main())
