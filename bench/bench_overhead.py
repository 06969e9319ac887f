"""Benchmark: the fixed cost of `fuseflow run` over a bare script doing the same work.

A 1-epoch iris MLP (`iris-1ep` of benchlib.PIPELINES), run as `fuseflow run iris-1ep --no-cache` (every step
computed, as the bare script does) against a Prefect server started here; the same with no server configured
(the default: the project's background Prefect server, started by the first run and reused by the others, which
fork from its warm start); the
same with `FUSEFLOW_PREFECT_SERVER=temporary` (Prefect's temporary server for each run, the default before);
and `bench/bare_train.py` with the same settings. Each is a fresh process, timed from start to exit; they are
interleaved in rotating order for `--rounds` rounds after one untimed warm-up of each (it creates the databases;
the warm-up of the no-server variant is the run that starts the background server, and its time is printed).
The table shows medians of wall-clock time and of CPU time (user + system of the process
and its children; the Prefect server's own CPU is not counted, nor a forked run's: it is the warm start's child).

    python bench/bench_overhead.py              # 5 rounds, about 3 minutes here
    python bench/bench_overhead.py --rounds 7
"""
from __future__ import annotations

import argparse
import resource
import sys

from benchlib import (BARE, PrefectServer, base_env, fuseflow_command, make_project, median, print_table, timed,
                      wait_for_warm_start)

BARE_ARGS = ["--dataset", "iris", "--hidden", "16", "--epochs", "1", "--batch-size", "16", "--lr", "0.001",
             "--seed", "42", "--experiment", "iris-1ep"]


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    project = make_project()
    (project / "prefect-server").mkdir()
    server = PrefectServer(project / "prefect-server")
    print(f"project {project}; Prefect server ready in {server.wait():.1f} s at {server.url}", flush=True)
    variants = {
        "bare script (bare_train.py)": ([sys.executable, str(BARE), *BARE_ARGS], base_env(project, None)),
        "fuseflow run, Prefect server": ([*fuseflow_command(), "run", "iris-1ep", "--no-cache"],
                                         base_env(project, server.url)),
        "fuseflow run, no server (background)": ([*fuseflow_command(), "run", "iris-1ep", "--no-cache"],
                                                 base_env(project, None)),
        "fuseflow run, temporary server": ([*fuseflow_command(), "run", "iris-1ep", "--no-cache"],
                                           {**base_env(project, None), "FUSEFLOW_PREFECT_SERVER": "temporary"}),
    }
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for name, (argv, env) in variants.items():  # warm-up: databases, bytecode caches, the background server
            seconds, _ = timed(argv, project, env)
            if "background" in name:
                print(f"first run with no server (starts the background server): {seconds:.2f} s; its warm start "
                      f"listened {wait_for_warm_start(project):.1f} s later", flush=True)
        names = list(variants)
        for round_no in range(args.rounds):
            order = names[round_no % len(names):] + names[:round_no % len(names)]
            for name in order:
                argv, env = variants[name]
                before = cpu_of_children()
                seconds, _ = timed(argv, project, env)
                walls[name].append(seconds)
                cpus[name].append(cpu_of_children() - before)
            print(f"round {round_no + 1}: " + ", ".join(f"{n.split(',')[0] if n.startswith('bare') else n}"
                                                         f" {walls[n][-1]:.2f} s" for n in names), flush=True)
    finally:
        server.stop()
        timed([*fuseflow_command(), "server", "stop"], project, base_env(project, None))
    bare = median(walls[names[0]])
    rows = [[name, f"{median(walls[name]):.2f}", "-" if name == names[0] else f"{median(walls[name]) - bare:+.2f}",
             f"{median(cpus[name]):.2f}", " ".join(f"{w:.1f}" for w in walls[name])] for name in names]
    print_table(f"Fixed overhead: 1-epoch iris MLP, medians of {args.rounds} interleaved runs",
                ["variant", "wall s", "vs bare s", "CPU s", "all wall s"], rows)


if __name__ == "__main__":
    main()
