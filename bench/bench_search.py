"""Benchmark: a 24-trial search over learning rate, width and dropout on digits, random search without pruning
against TPE with a median pruner (and TPE with successive halving), the same budget, for several seeds.

Each variant is `fuseflow run <pipeline> --no-cache` in a fresh process against one Prefect server started here,
one trial at a time (`max_concurrent: 1`, the fastest on 2 cores), timed from start to exit; the variants are
interleaved in rotating order, one round per seed, after an untimed warm-up. The table gives,
per seed and as medians, the wall time, the best validation accuracy of the sweep (its `best_val_accuracy`), how
many trials were pruned and the epochs trained in all.

    python bench/bench_search.py                  # 3 seeds, about 9 minutes here
    python bench/bench_search.py --seeds 5 --epochs 40
"""
from __future__ import annotations

import argparse
import sys

from benchlib import PrefectServer, base_env, fuseflow_command, make_project, median, print_table, timed

SEARCH = """\
  search-NAME:
    seed: SEED
    data: {source: sklearn, name: digits, split: {validation: 0.15, test: 0.15, seed: 42}}
    preprocess: [standardize]
    model: {type: mlp, hidden: [256], dropout: 0.1}
    train: {backend: torch, epochs: EPOCHS, batch_size: 32, optimizer: {name: adamw, lr: 0.001}}
    sweep:
      parameters:
        train.optimizer.lr: {distribution: loguniform, low: 1.0e-5, high: 3.0e-2}
        model.hidden: {distribution: choice, values: [[32], [128], [512], [512, 256]]}
        model.dropout: {distribution: uniform, low: 0.0, high: 0.6}
      SEARCH
      trials: TRIALS
      metric: val_accuracy
      max_concurrent: 1
"""

VARIANTS = {
    "random, no pruning": ("random", "sampler: random"),
    "tpe + median pruner": ("tpe", "sampler: tpe\n      pruner: {median: {startup_trials: 4, warmup_epochs: 2}}"),
    "tpe + successive halving": ("tpe-sha", "sampler: tpe\n      pruner: {successive_halving: {min_epochs: 2, "
                                            "reduction_factor: 3}}"),
}


def sweep_figures(tracking_uri: str, experiment: str) -> tuple[float, int, int]:
    """The latest sweep's best validation accuracy, pruned trials and epochs trained over all its trials."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    parent = client.search_runs([exp.experiment_id], "tags.`fuseflow.sweep.metric` != ''", max_results=1,
                                order_by=["attributes.start_time DESC"])[0]
    trials = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    epochs = sum(len(client.get_metric_history(t.info.run_id, "val_accuracy")) for t in trials)
    return parent.data.metrics["best_val_accuracy"], int(parent.data.metrics.get("trials_pruned", 0)), epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--trials", type=int, default=24)
    args = parser.parse_args()

    project = make_project()
    names = {variant: name for variant, (name, _) in VARIANTS.items()}
    text = "".join(SEARCH.replace("NAME", f"{name}-s{seed}").replace("SEED", str(seed))
                   .replace("SEARCH", search).replace("EPOCHS", str(args.epochs)).replace("TRIALS", str(args.trials))
                   for seed in range(1, args.seeds + 1) for name, search in VARIANTS.values())
    (project / "pipelines.yaml").write_text("pipelines:\n" + text, encoding="utf-8")
    (project / "prefect-server").mkdir()
    server = PrefectServer(project / "prefect-server")
    print(f"project {project}; Prefect server ready in {server.wait():.1f} s at {server.url}", flush=True)
    env = base_env(project, server.url)
    rows, results = [], {v: {"wall": [], "best": [], "pruned": [], "epochs": []} for v in VARIANTS}
    try:  # warm-up: databases, bytecode caches (a 2-trial search, not timed)
        timed([*fuseflow_command(), "run", "search-random-s1", "--no-cache", "--set", "sweep.trials=2"], project, env)
        for seed in range(1, args.seeds + 1):
            order = list(VARIANTS)[seed % len(VARIANTS):] + list(VARIANTS)[:seed % len(VARIANTS)]
            for variant in order:
                pipeline = f"search-{names[variant]}-s{seed}"
                seconds, _ = timed([*fuseflow_command(), "run", pipeline, "--no-cache"], project, env)
                best, pruned, epochs = sweep_figures(env["MLFLOW_TRACKING_URI"], pipeline)
                for key, value in (("wall", seconds), ("best", best), ("pruned", pruned), ("epochs", epochs)):
                    results[variant][key].append(value)
                rows.append([f"seed {seed}", variant, f"{seconds:.1f}", f"{best:.4f}", str(pruned), str(epochs)])
                print(f"seed {seed}, {variant}: {seconds:.1f} s, best val_accuracy {best:.4f}, {pruned} pruned, "
                      f"{epochs} epochs", flush=True)
    finally:
        server.stop()
    base = median(results["random, no pruning"]["wall"])
    for variant, figures in results.items():
        rows.append(["median", variant, f"{median(figures['wall']):.1f} ({median(figures['wall']) / base:.2f}x)",
                     f"{median(figures['best']):.4f}", f"{median(figures['pruned']):.0f}",
                     f"{median(figures['epochs']):.0f}"])
    print_table(f"{args.trials}-trial search on digits, {args.epochs} epochs a trial, {args.seeds} seeds",
                ["seed", "search", "wall s", "best val_accuracy", "pruned", "epochs trained"], rows)


if __name__ == "__main__":
    sys.exit(main())
