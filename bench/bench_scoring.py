"""Benchmark: batch scoring of 1,000,000 rows, a bare pandas + pyfunc loop against `fuseflow run` of a scoring pipeline.

In a temporary project (its own MLflow store, a Prefect server started here) a small tabular classifier is trained
once with fuseflow (`bench-train`: 4,000 generated rows; spend, age, tenure and a count, visits, with missing cells;
a string category, region, with missing cells; an MLP [32], 3 epochs) and registered as `bench-clf`. A CSV of
`--rows` unlabelled rows of the same columns is written in chunks, then scored, interleaved in alternating order for
`--rounds` rounds, by

- bare: a fresh Python process running `model = mlflow.pyfunc.load_model("models:/bench-clf/1")` and
  `for chunk in pd.read_csv(path, chunksize=B): model.predict(chunk).to_csv(out, mode="a", ...)` (label and
  proba_<class> columns, as fuseflow's `outputs: [label, proba]`);
- fuseflow: `fuseflow run score-main`, a `predict:` pipeline with the same model, input and `batch_size: B`, output
  `out/{run_id}.csv`, drift on (the default), against the Prefect server.

Each is timed from process start to exit (wall s; rows/s = rows / wall s), with its CPU (user + system, os.wait4),
its peak RSS summed over the process and its children (psutil, polled every 0.1 s) and the peak RSS of the process
itself (ru_maxrss from os.wait4). The loop time inside the process is shown too (bare: the script's timer;
fuseflow: the run's `scoring_seconds` metric), so start-up and per-row work can be told apart. Then, once each:
fuseflow and bare with a 4x smaller batch, fuseflow on the first quarter of the input, and fuseflow on 1,000 rows
(the memory of start-up alone): memory follows the batch, not the input. Every output is checked to hold every row,
and the labels of the first bare and fuseflow outputs are compared row by row. Last, in one child process with no
Prefect flow or MLflow run, fuseflow's loop (tasks.scoring.run.score_rows) scores the whole input with each of its
steps timed (and the bare loop the same way), then `--profile-rows` rows under cProfile.

    python bench/bench_scoring.py                # 3 rounds: about 4 minutes here
    python bench/bench_scoring.py --rounds 5     # about 5 minutes on a quiet machine
    python bench/bench_scoring.py --rows 200000 --rounds 1 --no-write   # a quick try
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from benchlib import PrefectServer, base_env, fuseflow_command, median, run_id_of, timed

RESULTS = Path(__file__).resolve().parent / "results_scoring.md"
MODEL_URI = "models:/bench-clf/1"
REGIONS = ["north", "south", "east", "west", "centre"]

TRAIN = """\
pipelines:
  bench-train:
    seed: 42
    tracking: {register: bench-clf}
    data:
      source: csv
      path: train.csv
      label_column: segment
      features: {spend: numeric, visits: numeric, age: numeric, tenure: numeric, region: category}
      feature_defaults: {numeric: {scaling: standardize}}
    model: {type: mlp, hidden: [32]}
    train: {backend: torch, epochs: 3, batch_size: 64, optimizer: {name: adamw, lr: 0.01}}
"""

SCORE = """\
  {name}:
    predict:
      model: {model}
      data: {{source: csv, path: {path}}}
      output: {{path: "out/{{run_id}}.csv"}}
      batch_size: {batch}
      outputs: [label, proba]
"""

BARE_SCRIPT = '''\
"""Bare batch scoring: MLflow's pyfunc model over pandas' chunked CSV reader, predictions appended to a CSV."""
import json
import sys
import time

import mlflow
import pandas as pd

uri, path, out, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = mlflow.pyfunc.load_model(uri)
started = time.perf_counter()
rows = 0
for chunk in pd.read_csv(path, chunksize=batch):
    model.predict(chunk).to_csv(out, mode="a", header=rows == 0, index=False)
    rows += len(chunk)
print(json.dumps({"rows": rows, "loop_seconds": time.perf_counter() - started}))
'''


def shop_rows(n: int, seed: int, labelled: bool) -> pd.DataFrame:
    """Customers: spend, visits (a count), age, tenure (some cells missing), a region; the segment follows spend."""
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 40.0, n)
    visits = rng.poisson(6, n).astype(float)
    age = rng.normal(45, 12, n).round(1)
    tenure = rng.exponential(3.0, n).round(2)
    visits[rng.random(n) < 0.1] = np.nan
    age[rng.random(n) < 0.05] = np.nan
    tenure[rng.random(n) < 0.02] = np.nan
    region = rng.choice(REGIONS, n).astype(object)
    region[rng.random(n) < 0.03] = None
    frame = pd.DataFrame({"spend": spend.round(2), "visits": visits, "age": age, "tenure": tenure, "region": region})
    if labelled:
        score = spend + 5 * np.nan_to_num(visits, nan=6.0)
        frame["segment"] = np.where(score > 120, "premium", np.where(score > 70, "regular", "budget"))
    return frame


def write_rows(path: Path, rows: int, chunk: int = 100_000) -> None:
    """`rows` unlabelled rows written `chunk` at a time (never the whole table in memory)."""
    for start in range(0, rows, chunk):
        shop_rows(min(chunk, rows - start), seed=1000 + start // chunk, labelled=False).to_csv(
            path, mode="w" if start == 0 else "a", header=start == 0, index=False)


def count_rows(path: Path) -> int:
    """Data lines of a CSV (no quoted newlines in these files): newlines minus the header."""
    lines = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            lines += block.count(b"\n")
    return lines - 1


class Measured:
    """One command as a fresh process: wall s, CPU s and ru_maxrss of os.wait4, peak RSS of its process tree."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        with open(log, "wb") as out:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
            self.peak_tree = 0
            done = threading.Event()
            poller = threading.Thread(target=self._poll, args=(proc.pid, done), daemon=True)
            poller.start()
            _, status, usage = os.wait4(proc.pid, 0)
            self.wall = time.perf_counter() - start
            done.set()
            poller.join()
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
        self.output = log.read_text(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{self.output[-4000:]}")
        self.cpu = usage.ru_utime + usage.ru_stime
        self.peak_process = usage.ru_maxrss / 1024  # KiB on Linux -> MiB

    def _poll(self, pid: int, done: threading.Event) -> None:
        try:
            root = psutil.Process(pid)
        except psutil.Error:
            return
        while not done.is_set():
            total = 0
            try:
                for proc in [root, *root.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            self.peak_tree = max(self.peak_tree, total)
            done.wait(0.1)


def run_metrics(tracking_uri: str, run_id: str) -> tuple[dict[str, float], dict[str, str]]:
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri).get_run(run_id)
    return run.data.metrics, run.data.tags


class Stopwatch:
    """Seconds spent in named calls, summed: `wrap` times a function, `wrap_iter` each step of an iterator."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def wrap(self, name: str, function):  # noqa: ANN001, ANN201
        def timed_call(*a, **k):  # noqa: ANN002, ANN003, ANN202
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                self.add(name, time.perf_counter() - start)
        return timed_call

    def wrap_iter(self, name: str, function):  # noqa: ANN001, ANN201
        def timed_iter(*a, **k):  # noqa: ANN002, ANN003, ANN202
            iterator = iter(function(*a, **k))
            while True:
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    self.add(name, time.perf_counter() - start)
                    return
                self.add(name, time.perf_counter() - start)
                yield item
        return timed_iter


def profile_main(args: argparse.Namespace) -> None:
    """(child process) Where fuseflow's scoring loop spends its time, in one process with no Prefect flow or MLflow
    run around it: (1) tasks.scoring.run.score_rows over the whole input with its steps timed (the module's own
    functions wrapped by a Stopwatch: no profiler), and the bare loop over the same input timed the same way;
    (2) score_rows over the first `--profile-rows` rows under cProfile. Prints one JSON line, then the top of the
    cProfile listing."""
    import cProfile
    import io
    import pstats

    import mlflow

    import tasks.scoring.run as scoring_run
    from tasks.scoring.config import ScoringConfig
    from tasks.scoring.drift import DriftMeter
    from tasks.scoring.tally import Tally
    from tasks.scoring.writer import FileSink

    folder = Path(args.project)
    sample = folder / "profile_rows.csv"
    with open(folder / "rows.csv", "rb") as src, open(sample, "wb") as dst:
        for _ in range(args.profile_rows + 1):
            dst.write(src.readline())
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    model = mlflow.pyfunc.load_model(MODEL_URI)
    version = mlflow.MlflowClient().get_model_version("bench-clf", "1")
    profile_file = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="features/profile.json",
                                                       dst_path=tempfile.mkdtemp(dir=folder))
    profile = json.loads(Path(profile_file).read_text())

    def config(path: str, output: str) -> ScoringConfig:
        return ScoringConfig.model_validate({"model": MODEL_URI, "data": {"source": "csv", "path": path},
                                             "output": {"path": output}, "batch_size": args.batch_size,
                                             "outputs": ["label", "proba"]})

    # (1) the real loop, its steps timed
    watch = Stopwatch()
    originals = (scoring_run.batches, scoring_run.conform, scoring_run._predict, FileSink.write, Tally.update,
                 DriftMeter.update)
    scoring_run.batches = watch.wrap_iter("read (reader.batches)", scoring_run.batches)
    scoring_run.conform = watch.wrap("cast (conform.conform)", scoring_run.conform)
    scoring_run._predict = watch.wrap("predict (model.predict)", scoring_run._predict)
    FileSink.write = watch.wrap("write (FileSink.write, to_csv)", FileSink.write)
    Tally.update = watch.wrap("tally (Tally.update)", Tally.update)
    DriftMeter.update = watch.wrap("drift (DriftMeter.update)", DriftMeter.update)
    started = time.perf_counter()
    result = scoring_run.score_rows(config("rows.csv", "out/stages.csv"), model, folder, {}, profile)
    loop = time.perf_counter() - started
    (scoring_run.batches, scoring_run.conform, scoring_run._predict, FileSink.write, Tally.update,
     DriftMeter.update) = originals
    if result.rows != args.rows:
        raise RuntimeError(f"score_rows scored {result.rows} rows, not {args.rows}")
    stages = dict(watch.seconds)
    stages["rest (input check, join/select, progress bar)"] = loop - sum(watch.seconds.values())
    # the bare loop over the same input, timed the same way
    out = folder / "out" / "stages-bare.csv"
    bare_stages = {"read (reader.batches)": 0.0, "predict (model.predict)": 0.0, "write (FileSink.write, to_csv)": 0.0}
    bare_start = time.perf_counter()
    reader = iter(pd.read_csv(folder / "rows.csv", chunksize=args.batch_size))
    rows = 0
    while True:
        t0 = time.perf_counter()
        chunk = next(reader, None)
        t1 = time.perf_counter()
        bare_stages["read (reader.batches)"] += t1 - t0
        if chunk is None:
            break
        predicted = model.predict(chunk)
        t2 = time.perf_counter()
        predicted.to_csv(out, mode="a", header=rows == 0, index=False)
        rows += len(chunk)
        bare_stages["predict (model.predict)"] += t2 - t1
        bare_stages["write (FileSink.write, to_csv)"] += time.perf_counter() - t2
    bare = time.perf_counter() - bare_start
    # (2) cProfile of the loop over a sample
    profiler = cProfile.Profile()
    profiler.enable()
    scoring_run.score_rows(config(sample.name, "out/profile.csv"), model, folder, {}, profile)
    profiler.disable()
    stats = pstats.Stats(profiler)
    wanted = {  # label -> (file suffix, function name)
        "cast: conform.conform": ("tasks/scoring/conform.py", "conform"),
        "  in it: Series.astype calls (mostly the numeric columns' astype('string'))": ("pandas/core/generic.py",
                                                                                       "astype"),
        "  in it: Series.map (the string column, a lambda per cell)": ("pandas/core/series.py", "map"),
        "predict: model.predict": ("tasks/scoring/run.py", "_predict"),
        "  in it: MLflow schema enforcement (_enforce_schema)": ("mlflow/models/utils.py", "_enforce_schema"),
        "  in it: CategoryFeature.codes (as_text: a Python call per cell)": ("types/category.py", "codes"),
        "write: FileSink.write": ("tasks/scoring/writer.py", "write"),
        "tally: Tally.update": ("tasks/scoring/tally.py", "update"),
        "drift: DriftMeter.update": ("tasks/scoring/drift.py", "update"),
        "  in it: profile.value_counts (a lambda per cell)": ("features/profile.py", "value_counts"),
        "whole loop: score_rows": ("tasks/scoring/run.py", "score_rows"),
    }
    callers = {"  in it: Series.astype calls (mostly the numeric columns' astype('string'))": "conform",
               "  in it: Series.map (the string column, a lambda per cell)": "conform"}
    found = {label: 0.0 for label in wanted}
    for (file, _, name), (_, _, _, cumulative, by_caller) in stats.stats.items():
        for label, (suffix, function) in wanted.items():
            if not (file.endswith(suffix) and name == function):
                continue
            if label in callers:  # only the calls made by conform itself
                cumulative = sum(c[3] for (cfile, _, cname), c in by_caller.items()
                                 if cname == callers[label] and cfile.endswith("tasks/scoring/conform.py"))
            found[label] = max(found[label], cumulative)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    print("PROFILE-JSON " + json.dumps({"loop": loop, "stages": stages, "bare": bare, "bare_stages": bare_stages,
                                        "profiled": found, "profile_rows": args.profile_rows}))
    print(text.getvalue())


def md_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(lines + ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of both variants")
    parser.add_argument("--profile-rows", type=int, default=200_000, help="rows of the cProfile run; 0: no stage "
                        "timing or profile")
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    parser.add_argument("--no-write", action="store_true", help=f"print only; do not write bench/{RESULTS.name}")
    parser.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--project", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile_child:
        return profile_main(args)

    command = " ".join(["python bench/bench_scoring.py", *sys.argv[1:]])
    batch, small = args.batch_size, max(1, args.batch_size // 4)
    quarter, floor = max(1, args.rows // 4), min(1000, args.rows)
    started = time.perf_counter()
    project = Path(tempfile.mkdtemp(prefix="fuseflow-bench-scoring-"))
    (project / "out").mkdir()
    (project / "prefect-server").mkdir()
    scoring = {"score-main": ("rows.csv", batch), "score-small-batch": ("rows.csv", small),
               "score-quarter-input": ("rows-quarter.csv", batch), "score-floor": ("rows-floor.csv", batch)}
    text = TRAIN + "".join(SCORE.format(name=name, model=MODEL_URI, path=path, batch=b)
                           for name, (path, b) in scoring.items())
    (project / "pipelines.yaml").write_text(text, encoding="utf-8")
    (project / "bare_score.py").write_text(BARE_SCRIPT, encoding="utf-8")
    shop_rows(4000, seed=0, labelled=True).to_csv(project / "train.csv", index=False)
    server = PrefectServer(project / "prefect-server")
    print(f"project {project}; Prefect server ready in {server.wait():.1f} s at {server.url}", flush=True)
    env = {**base_env(project, server.url), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    uri = env["MLFLOW_TRACKING_URI"]
    rows_csv = project / "rows.csv"

    def bare(rows_file: str, size: int, tag: str, expected: int) -> dict:
        out = project / "out" / f"bare-{tag}.csv"
        m = Measured([sys.executable, "bare_score.py", MODEL_URI, rows_file, str(out), str(size)], project, env,
                     project / f"bare-{tag}.log")
        reported = json.loads(next(ln for ln in m.output.splitlines() if ln.startswith('{"rows"')))
        return checked({"m": m, "loop": reported["loop_seconds"], "out": out, "rows": expected}, f"bare {tag}")

    def fuse(pipeline: str, tag: str, expected: int) -> dict:
        m = Measured([*fuseflow_command(), "run", pipeline], project, env, project / f"fuseflow-{tag}.log")
        metrics, tags = run_metrics(uri, run_id_of(m.output))
        out = project / tags["fuseflow.scoring.output"]  # relative to the project folder it ran in
        return checked({"m": m, "loop": metrics["scoring_seconds"], "out": out, "rows": expected,
                        "drift": tags.get("fuseflow.drift"), "rows_scored": metrics["rows_scored"]}, f"fuseflow {tag}")

    def checked(result: dict, what: str) -> dict:
        result["rows_out"] = count_rows(result["out"])
        if result["rows_out"] != result["rows"] or result.get("rows_scored", result["rows"]) != result["rows"]:
            raise RuntimeError(f"{what}: {result['rows_out']:,} rows written ({result.get('rows_scored')} scored), "
                               f"not {result['rows']:,}")
        m = result["m"]
        print(f"{what}: {m.wall:.1f} s (loop {result['loop']:.1f} s), CPU {m.cpu:.1f} s, peak RSS tree "
              f"{m.peak_tree / 2**20:.0f} MiB, largest process {m.peak_process:.0f} MiB, {result['rows_out']:,} rows "
              "out", flush=True)
        return result

    results: dict[str, list[dict]] = {"bare": [], "fuseflow": []}
    extra: dict[str, dict] = {}
    prof = None
    try:
        seconds, output = timed([*fuseflow_command(), "run", "bench-train"], project, env)
        print(f"trained and registered bench-clf in {seconds:.1f} s (run {run_id_of(output)})", flush=True)
        t0 = time.perf_counter()
        write_rows(rows_csv, args.rows)
        size_mb = rows_csv.stat().st_size / 1e6
        sample = pd.read_csv(rows_csv, nrows=min(batch, args.rows))
        frame_mb = sample.memory_usage(deep=True).sum() / 1e6 * args.rows / len(sample)
        with open(rows_csv, "rb") as src:
            head = [src.readline() for _ in range(quarter + 1)]
        (project / "rows-quarter.csv").write_bytes(b"".join(head))
        (project / "rows-floor.csv").write_bytes(b"".join(head[:floor + 1]))
        print(f"wrote {args.rows:,} rows to rows.csv in {time.perf_counter() - t0:.1f} s: {size_mb:.1f} MB on disk "
              f"(~{frame_mb:.0f} MB as one DataFrame, by memory_usage(deep=True) of {len(sample):,} rows)", flush=True)

        variants = {"bare": lambda r: bare("rows.csv", batch, f"r{r}", args.rows),
                    "fuseflow": lambda r: fuse("score-main", f"r{r}", args.rows)}
        for round_no in range(args.rounds):
            order = list(variants) if round_no % 2 == 0 else list(reversed(variants))
            for name in order:
                results[name].append(variants[name](round_no + 1))
            if round_no == 0:  # the first outputs of both: the same labels, row by row?
                labels = [pd.read_csv(results[n][0]["out"], usecols=["label"])["label"].to_numpy() for n in variants]
                agree = float((labels[0] == labels[1]).mean())
                print(f"labels of the first bare and fuseflow outputs agree on {agree:.4%} of the rows", flush=True)
            for name in variants:  # checked: they go (disk)
                results[name][-1]["out"].unlink(missing_ok=True)
        extra["fuseflow small batch"] = fuse("score-small-batch", "small-batch", args.rows)
        extra["bare small batch"] = bare("rows.csv", small, "small-batch", args.rows)
        extra["fuseflow quarter input"] = fuse("score-quarter-input", "quarter-input", quarter)
        extra["fuseflow floor"] = fuse("score-floor", "floor", floor)
        for result in extra.values():
            result["out"].unlink(missing_ok=True)
        if args.profile_rows:
            _, output = timed([sys.executable, str(Path(__file__).resolve()), "--profile-child", "--project",
                               str(project), "--profile-rows", str(min(args.profile_rows, args.rows)),
                               "--batch-size", str(batch), "--rows", str(args.rows)], Path(__file__).parent, env)
            line = next(ln for ln in output.splitlines() if ln.startswith("PROFILE-JSON "))
            prof = json.loads(line.removeprefix("PROFILE-JSON "))
            print(output.split(line, 1)[1][:5000], flush=True)
    finally:
        server.stop()
        for big in (rows_csv, project / "rows-quarter.csv", project / "rows-floor.csv", project / "profile_rows.csv",
                    *(project / "out").glob("*.csv")):
            big.unlink(missing_ok=True)  # the project folder stays (logs, MLflow store); the big files go

    def row(label: str, runs: list[dict], size: int) -> list[str]:
        n = runs[0]["rows"]
        wall, loop = median([r["m"].wall for r in runs]), median([r["loop"] for r in runs])
        return [label, f"{n:,}", f"{size:,}", f"{wall:.1f}", f"{n / wall:,.0f}", f"{loop:.2f}", f"{n / loop:,.0f}",
                f"{median([r['m'].cpu for r in runs]):.1f}", f"{median([r['m'].peak_tree for r in runs]) / 2**20:.0f}",
                f"{median([r['m'].peak_process for r in runs]):.0f}", " ".join(f"{r['m'].wall:.1f}" for r in runs)]

    header = ["variant", "rows", "batch", "wall s", "rows/s", "loop s", "loop rows/s", "CPU s", "peak RSS tree MiB",
              "largest process MiB", "all wall s"]
    main_rows = [row("bare: pandas chunks + pyfunc", results["bare"], batch),
                 row("fuseflow run", results["fuseflow"], batch)]
    extra_rows = [row("fuseflow run, 4x smaller batch", [extra["fuseflow small batch"]], small),
                  row("bare, 4x smaller batch", [extra["bare small batch"]], small),
                  row("fuseflow run, 1/4 of the input", [extra["fuseflow quarter input"]], batch),
                  row(f"fuseflow run, {floor:,} rows (start-up floor)", [extra["fuseflow floor"]], batch)]
    title = (f"Scoring {args.rows:,} rows: medians of {args.rounds} interleaved rounds, then one run of each "
             f"memory variant ({args.threads} torch thread{'s' if args.threads > 1 else ''})")
    table = md_table(header, main_rows + extra_rows)
    wall_ratio = median([r["m"].wall for r in results["fuseflow"]]) / median([r["m"].wall for r in results["bare"]])
    loop_ratio = median([r["loop"] for r in results["fuseflow"]]) / median([r["loop"] for r in results["bare"]])
    print(f"\n{title}\n\n{table}\n\nfuseflow / bare: wall {wall_ratio:.2f}x, loop {loop_ratio:.2f}x; labels agree "
          f"on {agree:.4%}")
    stage_table = profile_table = ""
    if prof:
        names = list(prof["stages"])
        stage_rows = [[name, f"{prof['stages'][name]:.2f}", f"{prof['stages'][name] / prof['loop']:.0%}",
                       f"{prof['bare_stages'][name]:.2f}" if name in prof["bare_stages"] else "-"] for name in names]
        stage_rows.append(["whole loop", f"{prof['loop']:.2f}", "100%", f"{prof['bare']:.2f}"])
        stage_table = md_table(["step of the loop", "fuseflow s", "share", "bare s"], stage_rows)
        profile_table = md_table(["function (cumulative, under cProfile)", "s", "share of loop"],
                                 [[k, f"{v:.2f}", f"{v / prof['profiled']['whole loop: score_rows']:.0%}"]
                                  for k, v in prof["profiled"].items()])
        print(f"\nSteps of the loop over {args.rows:,} rows, batch {batch:,}, in one process (no profiler)\n\n"
              f"{stage_table}\n\ncProfile, {prof['profile_rows']:,} rows\n\n{profile_table}")
    total = time.perf_counter() - started
    print(f"\nbenchmark took {total / 60:.1f} minutes", flush=True)
    if args.no_write:
        return
    lines = [
        "# Scoring: a bare pandas + pyfunc loop vs `fuseflow run` of a `predict:` pipeline (`bench_scoring.py`)", "",
        f"Command: `{command}` (from the project folder, with the project's venv). Date: {args.date}. Machine: "
        f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, shared with other work. "
        f"The whole benchmark took {total / 60:.1f} minutes.", "",
        f"Input: {args.rows:,} unlabelled rows (spend, visits, age, tenure: numbers with missing cells; region: a "
        f"string with missing cells) written in chunks: {size_mb:.1f} MB of CSV, ~{frame_mb:.0f} MB as one pandas "
        f"DataFrame. Model: `{MODEL_URI}`, an MLP [32] trained and registered by `fuseflow run bench-train` (4,000 "
        "rows, 3 epochs). Both variants write `label` and `proba_<class>` per row; fuseflow also counts the "
        f"prediction distribution and drift (on by default; `fuseflow.drift={results['fuseflow'][0]['drift']}`).",
        "", f"{title}:", "", table, "",
        "- wall s: process start to exit; rows/s = rows / wall s. loop s: the scoring loop inside the process (bare: "
        "the script's timer around its loop, after `load_model`; fuseflow: the run's `scoring_seconds` metric); loop "
        "rows/s = rows / loop s.",
        "- peak RSS tree: the largest sum of RSS over the process and all its children, polled every 0.1 s with "
        "psutil. largest process: ru_maxrss of that process from os.wait4 (one process's peak, not a sum; it can "
        "exceed the polled figure, which may miss a peak shorter than 0.1 s).",
        f"- fuseflow / bare: wall **{wall_ratio:.2f}x**, loop **{loop_ratio:.2f}x**. Every output held its "
        f"{args.rows:,} rows (and the run's `rows_scored` agreed); the labels of the first bare and fuseflow "
        f"outputs agree on {agree:.4%} of the rows.", "",
    ]
    if prof:
        lines += [f"Steps of fuseflow's loop (tasks.scoring.run.score_rows over the same {args.rows:,} rows, batch "
                  f"{batch:,}, in one process without Prefect or MLflow run; each step's function wrapped by a "
                  "timer, no profiler), against the bare loop's read, predict and write timed the same way:", "",
                  stage_table, "",
                  f"cProfile of score_rows over the first {prof['profile_rows']:,} rows (cumulative seconds; the "
                  "profiler inflates code that makes many Python calls):", "", profile_table, ""]
    RESULTS.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
