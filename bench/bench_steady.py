"""Benchmark: steady-state training speed of `fuseflow run` against the bare PyTorch loop.

`digits-steady` of benchlib.PIPELINES (an MLP with two hidden layers of `--hidden` units, `--epochs` epochs, batch
32, AdamW) as `fuseflow run digits-steady --no-cache` against a Prefect server started here, and
`bench/bare_train.py` with the same settings, interleaved for `--rounds` pairs. fuseflow does per epoch what the
bare loop does (train, validate, log the epoch's metrics to MLflow) plus its own per-epoch work: the checkpoint
(`checkpoint_every: 1`, the default), the progress bar and the early-stopping book-keeping. The steady state is
read from MLflow: the time between the first and the last epoch's `train_loss`, divided by the epochs between
them. Wall-clock totals and CPU time (user + system of the process and its children) are shown too.

Both run with `--threads` torch threads (default 1, through OMP_NUM_THREADS): on a small shared machine, two
threads that wait for each other make this network train up to 100x slower and the figures meaningless.

    python bench/bench_steady.py                     # 5 pairs of ~60 s trainings: 10+ minutes
    python bench/bench_steady.py --rounds 1 --epochs 20
"""
from __future__ import annotations

import argparse
import resource
import sys

from benchlib import (BARE, PrefectServer, base_env, epoch_span, fuseflow_command, make_project, median,
                      print_table, run_id_of, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    project = make_project(hidden=args.hidden, epochs=args.epochs)
    (project / "prefect-server").mkdir()
    server = PrefectServer(project / "prefect-server")
    print(f"project {project}; Prefect server ready in {server.wait():.1f} s", flush=True)
    threads = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    bare_args = ["--dataset", "digits", "--hidden", str(args.hidden), str(args.hidden), "--epochs", str(args.epochs),
                 "--batch-size", "32", "--lr", "0.001", "--seed", "42", "--experiment", "digits-steady"]
    variants = {
        "bare PyTorch loop (bare_train.py)": ([sys.executable, str(BARE), *bare_args],
                                              {**base_env(project, None), **threads}),
        "fuseflow run (Prefect server)": ([*fuseflow_command(), "run", "digits-steady", "--no-cache"],
                                          {**base_env(project, server.url), **threads}),
    }
    uri = variants["fuseflow run (Prefect server)"][1]["MLFLOW_TRACKING_URI"]
    walls: dict[str, list[float]] = {name: [] for name in variants}
    per_epoch: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    try:  # untimed 1-epoch runs of both: databases and bytecode caches exist before the first timed run
        timed([*variants[names[0]][0], "--epochs", "1"], project, variants[names[0]][1])  # the last --epochs wins
        timed([*variants[names[1]][0], "--set", "train.epochs=1"], project, variants[names[1]][1])
        for round_no in range(args.rounds):
            order = names if round_no % 2 == 0 else names[::-1]
            for name in order:
                argv, env = variants[name]
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                seconds, output = timed(argv, project, env)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
                span, epochs = epoch_span(uri, run_id_of(output))
                walls[name].append(seconds)
                per_epoch[name].append(span / epochs)
            print(f"round {round_no + 1}: " + "; ".join(
                f"{n.split(' (')[0]} {walls[n][-1]:.1f} s, {per_epoch[n][-1] * 1000:.1f} ms/epoch" for n in names),
                flush=True)
    finally:
        server.stop()
    bare, flow = names
    rows = [[name, f"{median(walls[name]):.1f}", f"{median(per_epoch[name]) * 1000:.1f}", f"{median(cpus[name]):.1f}",
             " ".join(f"{w:.0f}" for w in walls[name])] for name in names]
    rows.append(["ratio fuseflow / bare", f"{median(walls[flow]) / median(walls[bare]):.3f}",
                 f"{median(per_epoch[flow]) / median(per_epoch[bare]):.3f}",
                 f"{median(cpus[flow]) / median(cpus[bare]):.3f}", ""])
    print_table(f"Steady state: digits MLP {args.hidden}x{args.hidden}, {args.epochs} epochs, {args.threads} torch "
                f"thread(s); medians of {args.rounds} interleaved pairs",
                ["variant", "wall s", "ms per epoch", "CPU s", "all wall s"], rows)


if __name__ == "__main__":
    main()
