"""Benchmark: a warm rerun of an unchanged pipeline against its cold run.

Cold: `fuseflow run NAME` with an empty step cache (a fresh `FUSEFLOW_CACHE_DIR`), so every step is computed.
Warm: the same command again on that cache, so data loading, preprocessing and training are reused and only the
run's own work remains (its MLflow run, evaluation, the logged model). Pipelines: `digits-mlp` of the project's
pipelines.yaml (the default pipeline) and `digits-steady` of benchlib.PIPELINES (1024x1024, 150 epochs: ~60 s of
training with one torch thread here), both
against a Prefect server started here, with `--threads` torch threads. Each round is a cold run then a warm one;
the table shows medians and warm / cold.

    python bench/bench_rerun.py                    # 5 rounds of both pipelines: about 10 minutes here
    python bench/bench_rerun.py --rounds 3 --pipelines digits-mlp
"""
from __future__ import annotations

import argparse
import tempfile

import yaml

from benchlib import (ROOT, PrefectServer, base_env, fuseflow_command, make_project, median, print_table, run_id_of,
                      timed)


def cache_tags(tracking_uri: str, run_id: str) -> str:
    from mlflow import MlflowClient

    tags = MlflowClient(tracking_uri).get_run(run_id).data.tags
    steps = sorted(k for k in tags if k.startswith("fuseflow.cache.") and not k.endswith(".reason"))
    return ", ".join(f"{k.removeprefix('fuseflow.cache.')} {tags[k]}" for k in steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pipelines", nargs="+", default=["digits-mlp", "digits-steady"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    project = make_project()
    bench_pipelines = yaml.safe_load((project / "pipelines.yaml").read_text())["pipelines"]
    default = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
    merged = {"defaults": default.get("defaults", {}),
              "pipelines": {"digits-mlp": default["pipelines"]["digits-mlp"], **bench_pipelines}}
    (project / "pipelines.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    (project / "prefect-server").mkdir()
    server = PrefectServer(project / "prefect-server")
    print(f"project {project}; Prefect server ready in {server.wait():.1f} s", flush=True)
    env = {**base_env(project, server.url), "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    uri = env["MLFLOW_TRACKING_URI"]
    cold: dict[str, list[float]] = {p: [] for p in args.pipelines}
    warm: dict[str, list[float]] = {p: [] for p in args.pipelines}
    try:
        timed([*fuseflow_command(), "run", "iris-1ep"], project, env)  # untimed: databases, bytecode caches
        for round_no in range(args.rounds):
            for name in args.pipelines:
                run_env = {**env, "FUSEFLOW_CACHE_DIR": tempfile.mkdtemp(prefix="cache-", dir=project)}
                seconds, _ = timed([*fuseflow_command(), "run", name], project, run_env)
                cold[name].append(seconds)
                seconds, output = timed([*fuseflow_command(), "run", name], project, run_env)
                warm[name].append(seconds)
                print(f"round {round_no + 1} {name}: cold {cold[name][-1]:.1f} s, warm {warm[name][-1]:.1f} s "
                      f"({cache_tags(uri, run_id_of(output))})", flush=True)
    finally:
        server.stop()
    rows = [[name, f"{median(cold[name]):.1f}", f"{median(warm[name]):.1f}",
             f"{median(warm[name]) / median(cold[name]):.3f}"] for name in args.pipelines]
    print_table(f"Warm rerun vs cold run (Prefect server, {args.threads} torch thread(s)); medians of "
                f"{args.rounds} rounds", ["pipeline", "cold s", "warm s", "warm / cold"], rows)


if __name__ == "__main__":
    main()
