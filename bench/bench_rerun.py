"""Benchmark: a warm rerun of an unchanged pipeline against its cold run.

Cold: `fuseflow run NAME` with an empty step cache (a fresh `FUSEFLOW_CACHE_DIR`), so every step is computed.
Warm: the same command again on that cache, so data loading, preprocessing and training are reused and only the
run's own work remains (its MLflow run, the reused outputs). Pipelines: `digits-mlp` of the project's
pipelines.yaml (the default pipeline) and `digits-steady` of benchlib.PIPELINES (1024x1024, 150 epochs: ~60 s of
training with one torch thread here), with `--threads` torch threads.

`--prefect background` (the default, what a user gets): no PREFECT_API_URL, so the runs use the project's
background server and fork from its warm start (the pre-imported Python beside it); each round also times the
warm rerun with `FUSEFLOW_WARM_START=0` (a fresh interpreter). `--prefect server`: a `prefect server start` of
the benchmark's own in PREFECT_API_URL (no warm start). Each round is a cold run then the warm one(s); the table
shows medians and warm / cold.

    python bench/bench_rerun.py                    # 5 rounds of both pipelines: about 10 minutes here
    python bench/bench_rerun.py --rounds 5 --pipelines digits-mlp
"""
from __future__ import annotations

import argparse
import tempfile

import yaml

from benchlib import (ROOT, PrefectServer, base_env, fuseflow_command, make_project, median, print_table, run_id_of,
                      timed, wait_for_warm_start)


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
    parser.add_argument("--prefect", choices=["background", "server"], default="background")
    args = parser.parse_args()

    project = make_project()
    bench_pipelines = yaml.safe_load((project / "pipelines.yaml").read_text())["pipelines"]
    default = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
    merged = {"defaults": default.get("defaults", {}),
              "pipelines": {"digits-mlp": default["pipelines"]["digits-mlp"], **bench_pipelines}}
    (project / "pipelines.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    server = None
    if args.prefect == "server":
        (project / "prefect-server").mkdir()
        server = PrefectServer(project / "prefect-server")
        print(f"project {project}; Prefect server ready in {server.wait():.1f} s", flush=True)
    env = {**base_env(project, server.url if server else None), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads), "FUSEFLOW_PREFECT_SERVER": "background"}
    env.pop("FUSEFLOW_WARM_START", None)
    uri = env["MLFLOW_TRACKING_URI"]
    columns = ["cold", "warm"] + (["warm, no warm start"] if server is None else [])
    times: dict[str, dict[str, list[float]]] = {p: {c: [] for c in columns} for p in args.pipelines}
    try:
        timed([*fuseflow_command(), "run", "iris-1ep"], project, env)  # untimed: databases, bytecode caches
        if server is None:
            print(f"project {project}; the warm start listened {wait_for_warm_start(project):.1f} s after the "
                  "first run", flush=True)
        for round_no in range(args.rounds):
            for name in args.pipelines:
                run_env = {**env, "FUSEFLOW_CACHE_DIR": tempfile.mkdtemp(prefix="cache-", dir=project)}
                envs = {"cold": run_env, "warm": run_env, "warm, no warm start": {**run_env,
                                                                                  "FUSEFLOW_WARM_START": "0"}}
                notes = []
                for column in columns:
                    seconds, output = timed([*fuseflow_command(), "run", name], project, envs[column])
                    times[name][column].append(seconds)
                    forked = "Warm start: forked" in output
                    notes.append(f"{column} {seconds:.1f} s{' (forked)' if forked else ''}")
                print(f"round {round_no + 1} {name}: {', '.join(notes)} ({cache_tags(uri, run_id_of(output))})",
                      flush=True)
    finally:
        if server is not None:
            server.stop()
        else:
            timed([*fuseflow_command(), "server", "stop"], project, env)
    rows = []
    for name in args.pipelines:
        cold = median(times[name]["cold"])
        rows.append([name] + [f"{median(times[name][c]):.2f}" for c in columns] +
                    [f"{median(times[name][c]) / cold:.3f}" for c in columns[1:]])
    where = "background server with its warm start" if server is None else "a Prefect server in PREFECT_API_URL"
    print_table(f"Warm rerun vs cold run ({where}, {args.threads} torch thread(s)); medians of {args.rounds} rounds",
                ["pipeline"] + [f"{c} s" for c in columns] + [f"{c} / cold" for c in columns[1:]], rows)


if __name__ == "__main__":
    main()
