"""Benchmark: diamonds price regression as a bare scikit-learn + PyTorch + MLflow script and as `fuseflow run`.

The data is a seeded sample of `--rows` rows of ../shared/data/tables/diamonds.csv (ggplot2: `carat`, `depth`,
`table`, `x`, `y`, `z` numeric; `cut`, `color`, `clarity` strings; an unnamed row-number column as R writes it),
copied line by line into a temporary project folder. Both sides then do the same work on that file:

- the same split (seeded 70/15/15, computed the way fuseflow computes it, so the test rows are the same rows);
- the same features: numbers standardized, the three string columns one-hot encoded, fitted on train only (bare:
  a ColumnTransformer of StandardScaler and OneHotEncoder; fuseflow: the columns declared `numeric` and `category`
  with `feature_defaults: {numeric: {scaling: standardize}, category: {encoding: one_hot}}`, as the project's
  `diamonds-price` example); the target standardized on train (fuseflow's default), predictions mapped back to
  dollars;
- the same MLP (`--hidden`, ReLU; default [64, 32] and lr 0.003 as `diamonds-price`), epochs, batch size, AdamW
  (no weight decay), MSE loss, a seeded initialisation and a seeded batch order, validation every epoch, no early
  stopping (a fixed number of epochs on both sides);
- the same MLflow record: params, the config as `pipeline.yaml`, the training rows as the dataset input, per-epoch
  metrics (train_loss, val_loss, lr, val_r2, val_mae), test rmse/mae/r2, the evaluation report and learning-curve
  plot, and a pyfunc model that predicts prices from raw rows (bare: a PythonModel holding the ColumnTransformer
  and the network, with an inferred signature and an input example), in a temporary sqlite store.

The bare side is this file run with `--bare` (a fresh process, like `fuseflow run`); fuseflow runs
`fuseflow run diamonds-price --no-cache` of a pipelines.yaml written here, against a Prefect server started here
(`--prefect server`, as bench_overhead's "Prefect server" variant) or the project's background server
(`--prefect background`, no server configured: the default of `fuseflow run`). Both run with `--threads` torch
threads (OMP_NUM_THREADS, as bench_steady.py). After one untimed 1-epoch warm-up of each, `--rounds` pairs run
interleaved in alternating order; the tables show medians: wall seconds, CPU seconds of the run's process (and,
with `--prefect server`, of the Prefect server's processes during the run), the phase timings (fuseflow's own
`timing/<phase>_s` metrics; the bare script's same phases, measured alike), test metrics, and the prediction
latency of both logged models, `mlflow.pyfunc.load_model(uri).predict(rows)`, on 1 and 10,000 raw rows of
diamonds.csv that are not in the sample (as `pd.read_csv` gives them, without `price` and R's row numbers), next
to the bare objects' own predict (ColumnTransformer + torch) and fuseflow's predictor without MLflow's pyfunc layer.

    python bench/bench_tables.py                            # 5 rounds of 20,000 rows: about 5 minutes here
    python bench/bench_tables.py --rounds 3 --rows 5000     # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import PrefectServer, base_env, fuseflow_command, median, print_table, run_id_of, timed

ROOT = Path(__file__).resolve().parent.parent
DIAMONDS = ROOT.parent / "shared" / "data" / "tables" / "diamonds.csv"
NUMERIC = ["carat", "depth", "table", "x", "y", "z"]
CATEGORIES = ["cut", "color", "clarity"]
LABEL = "price"
PIPELINE = "diamonds-price"
VALIDATION, TEST = 0.15, 0.15
PHASES = ["startup", "open-run", "load-data", "preprocess", "build-model", "train", "evaluate", "log-model"]


# --- the bare script ---------------------------------------------------------------------------------------------

def process_started_at() -> float:
    """Unix time this process started (from /proc, as fuseflow's `startup` phase counts), else now."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            ticks = int(handle.read().rpartition(")")[2].split()[19])
        return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time()


def bare(args: argparse.Namespace) -> None:
    """What one would write without fuseflow: pandas, a ColumnTransformer, a plain PyTorch loop, MLflow."""
    started = process_started_at()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    import mlflow.pyfunc
    import numpy as np
    import pandas as pd
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import yaml
    from mlflow.models import infer_signature
    from sklearn import metrics as skm
    from sklearn.compose import ColumnTransformer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    phases: dict[str, float] = {"startup": time.time() - started}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = now - clock
        clock = now

    config = {"seed": args.seed, "data": {"source": "csv", "path": str(args.data), "label_column": LABEL,
                                          "task": "regression", "numeric": NUMERIC, "categories": CATEGORIES},
              "model": {"type": "mlp", "hidden": args.hidden},
              "train": {"backend": "torch", "epochs": args.epochs, "batch_size": args.batch_size, "loss": "mse",
                        "optimizer": {"name": "adamw", "lr": args.lr}},
              "evaluate": {"metrics": ["rmse", "mae", "r2"]}}
    mlflow.set_experiment(args.experiment)
    with mlflow.start_run() as run:
        mlflow.log_params({"seed": args.seed, "data.path": str(args.data), "model.hidden": json.dumps(args.hidden),
                           "train.epochs": args.epochs, "train.batch_size": args.batch_size,
                           "train.optimizer.lr": args.lr})
        mlflow.log_text(yaml.safe_dump({"pipelines": {PIPELINE: config}}), "pipeline.yaml")
        lap("open-run")

        frame = pd.read_csv(args.data)
        features, y = frame[NUMERIC + CATEGORIES], frame[LABEL].to_numpy(np.float32)
        rows = np.arange(len(frame))  # the split fuseflow makes (tasks/data/tabular.py): same seed, same rows
        train, rest = train_test_split(rows, test_size=VALIDATION + TEST, random_state=args.seed)
        val, test = train_test_split(rest, test_size=TEST / (VALIDATION + TEST), random_state=args.seed)
        raw = {"train": features.iloc[train], "validation": features.iloc[val], "test": features.iloc[test]}
        dataset = mlflow.data.from_pandas(raw["train"].assign(**{LABEL: y[train]}), source=str(args.data),
                                          name=f"csv:{args.data}", targets=LABEL)
        mlflow.log_input(dataset, context="training")
        lap("load-data")

        encoder = ColumnTransformer([("numeric", StandardScaler(), NUMERIC),
                                     ("category", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                                      CATEGORIES)]).fit(raw["train"])
        X = {k: torch.from_numpy(encoder.transform(v).astype(np.float32)) for k, v in raw.items()}
        y_mean, y_std = float(y[train].mean()), float(y[train].std()) or 1.0
        Y = {k: torch.from_numpy((y[i] - y_mean) / y_std) for k, i in (("train", train), ("validation", val))}
        lap("preprocess")

        torch.manual_seed(args.seed)
        layers, width = [], X["train"].shape[1]
        for size in args.hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        net = nn.Sequential(*layers, nn.Linear(width, 1))
        lap("build-model")

        torch.manual_seed(args.seed)
        optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
        generator = torch.Generator().manual_seed(args.seed)
        eval_batch = max(args.batch_size, 256)

        def predict(inputs: torch.Tensor) -> torch.Tensor:
            net.eval()
            with torch.no_grad():
                return torch.cat([net(inputs[i:i + eval_batch]) for i in range(0, len(inputs), eval_batch)])[:, 0]

        history, loop_seconds = [], 0.0
        for epoch in range(1, args.epochs + 1):
            began = time.perf_counter()
            net.train()
            order = torch.randperm(len(X["train"]), generator=generator)
            total = torch.zeros(())
            for i in range(0, len(order), args.batch_size):
                idx = order[i:i + args.batch_size]
                loss = F.mse_loss(net(X["train"][idx])[:, 0], Y["train"][idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(idx)
            loop_seconds += time.perf_counter() - began
            out, target = predict(X["validation"]), Y["validation"]
            row = {"train_loss": (total / len(order)).item(), "val_loss": F.mse_loss(out, target).item(),
                   "lr": args.lr, "val_r2": 1 - ((out - target) ** 2).sum().item() /
                   (((target - target.mean()) ** 2).sum().item() or 1.0),
                   "val_mae": (out - target).abs().mean().item()}
            mlflow.log_metrics(row, step=epoch)
            history.append({"epoch": epoch, **row})
        mlflow.log_metrics({"epochs_run": args.epochs, "train_samples_per_s": args.epochs * len(train) / loop_seconds})
        lap("train")

        predicted = predict(X["test"]).numpy() * y_std + y_mean
        truth = y[test]
        metrics = {"test_rmse": float(np.sqrt(skm.mean_squared_error(truth, predicted))),
                   "test_mae": float(skm.mean_absolute_error(truth, predicted)),
                   "test_r2": float(skm.r2_score(truth, predicted))}
        mlflow.log_metrics(metrics, step=args.epochs)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            report = {"task": "regression", "sizes": {k: len(v) for k, v in raw.items()}, "metrics": metrics}
            (folder / "evaluation_report.json").write_text(json.dumps(report, indent=2))
            fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
            epochs = [h["epoch"] for h in history]
            for key in ("train_loss", "val_loss"):
                left.plot(epochs, [h[key] for h in history], marker="o", markersize=3, label=key)
            for key in ("val_r2", "val_mae"):
                right.plot(epochs, [h[key] for h in history], marker="o", markersize=3, label=key)
            for ax in (left, right):
                ax.legend()
            fig.savefig(folder / "learning_curve.png", dpi=100)
            plt.close(fig)
            mlflow.log_artifacts(str(folder), "evaluation")
        lap("evaluate")

        net.eval()
        model = bare_model_class()(encoder, net, y_mean, y_std)
        example = raw["test"].head(5)
        mlflow.pyfunc.log_model(name="model", python_model=model, input_example=example,
                                signature=infer_signature(example, model.predict(None, example)),
                                pip_requirements=[f"mlflow=={mlflow.__version__}",
                                                  f"torch=={torch.__version__.split('+')[0]}", "scikit-learn",
                                                  "pandas"])
        lap("log-model")
    lap("close-run")  # mlflow.end_run: fuseflow's counterpart falls in "rest"
    print(json.dumps({"run_id": run.info.run_id, **metrics, "phases": phases,
                      "train_samples_per_s": args.epochs * len(train) / loop_seconds}), flush=True)


def bare_model_class() -> Any:
    """The bare script's pyfunc model (a class made on call: MLflow is imported by the bare script only)."""
    import mlflow.pyfunc

    class BareModel(mlflow.pyfunc.PythonModel):
        """Raw rows -> ColumnTransformer -> the network -> dollars."""

        def __init__(self, encoder: Any, net: Any, y_mean: float, y_std: float) -> None:
            self.encoder, self.net, self.y_mean, self.y_std = encoder, net, y_mean, y_std

        def predict(self, context, model_input, params=None):  # noqa: ANN001 - MLflow inspects the signature
            import numpy as np
            import pandas as pd
            import torch

            X = torch.from_numpy(self.encoder.transform(model_input).astype(np.float32))
            with torch.no_grad():
                out = torch.cat([self.net(X[i:i + 4096]) for i in range(0, len(X), 4096)])[:, 0]
            return pd.DataFrame({"prediction": out.double().numpy() * self.y_std + self.y_mean})

    return BareModel


# --- the fuseflow pipeline ---------------------------------------------------------------------------------------

def pipelines_yaml(data: Path, args: argparse.Namespace) -> str:
    return f"""\
pipelines:
  {PIPELINE}:
    seed: {args.seed}
    data:
      source: csv
      path: {data}
      label_column: {LABEL}
      task: regression
      split: {{validation: {VALIDATION}, test: {TEST}}}
      features: {{{", ".join(f"{c}: numeric" for c in NUMERIC)}, {", ".join(f"{c}: category" for c in CATEGORIES)}}}
      feature_defaults:
        numeric: {{scaling: standardize}}
        category: {{encoding: one_hot}}
    model: {{type: mlp, hidden: {json.dumps(args.hidden)}}}
    train:
      backend: torch
      epochs: {args.epochs}
      batch_size: {args.batch_size}
      loss: mse
      optimizer: {{name: adamw, lr: {args.lr}}}
    evaluate:
      metrics: [rmse, mae, r2]
"""


def write_sample(project: Path, rows: int, seed: int) -> tuple[Path, list[int]]:
    """`rows` lines of diamonds.csv (seeded, in file order) copied as they are; returns the file and the 0-based
    data row numbers taken."""
    lines = DIAMONDS.read_text(encoding="utf-8").splitlines(keepends=True)
    taken = sorted(random.Random(seed).sample(range(len(lines) - 1), min(rows, len(lines) - 1)))
    path = project / "diamonds-sample.csv"
    path.write_text(lines[0] + "".join(lines[i + 1] for i in taken), encoding="utf-8")
    return path, taken


# --- measuring ---------------------------------------------------------------------------------------------------

def fuseflow_record(uri: str, run_id: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    metrics = MlflowClient(uri).get_run(run_id).data.metrics
    phases = {k[len("timing/"):-2]: v for k, v in metrics.items() if k.startswith("timing/") and k.endswith("_s")}
    return {"run_id": run_id, "phases": phases, **{k: metrics.get(k) for k in
                                                   ("test_rmse", "test_mae", "test_r2", "train_samples_per_s")}}


def latency(predict: Any, rows: Any, calls: int) -> float:
    """Median seconds of `predict(rows)` over `calls` calls, after one untimed call."""
    predict(rows)
    seconds = []
    for _ in range(calls):
        began = time.perf_counter()
        predict(rows)
        seconds.append(time.perf_counter() - began)
    return median(seconds)


def measure_latency(uri: str, runs: dict[str, str], held_out: list[int], args: argparse.Namespace) -> list[list[str]]:
    """Prediction latency and held-out RMSE of both logged models, and of their objects without MLflow's pyfunc."""
    import warnings

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    import mlflow
    import mlflow.pyfunc
    import numpy as np
    import pandas as pd
    import sklearn.compose  # noqa: F401 - the libraries both models load with, imported before load times
    import torch

    import tasks.export.tabular_pyfunc  # noqa: F401

    warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")
    torch.set_num_threads(args.threads)
    mlflow.set_tracking_uri(uri)
    table = pd.read_csv(DIAMONDS)
    picked = random.Random(args.seed).sample(held_out, min(args.latency_rows, len(held_out)))
    # the rows as pd.read_csv gives them, without the target and R's row numbers (which a new row would not have)
    big = table.iloc[picked].drop(columns=[LABEL, table.columns[0]]).reset_index(drop=True)
    truth = table[LABEL].to_numpy(np.float64)[picked]
    one = big.iloc[[0]]
    rows = []
    for side, run_id in runs.items():
        began = time.perf_counter()
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
        load_s = time.perf_counter() - began
        inner = model.unwrap_python_model()
        direct = (inner.predictor.predict_frame if side == "fuseflow"
                  else (lambda frame, m=inner: m.predict(None, frame)))
        predicted = model.predict(big)["prediction"].to_numpy(np.float64)
        rmse = float(np.sqrt(np.mean((predicted - truth) ** 2)))
        mae = float(np.mean(np.abs(predicted - truth)))
        same = np.allclose(direct(big)["prediction"].to_numpy(np.float64), predicted)
        label = "fuseflow model" if side == "fuseflow" else "bare model"
        how = "predictor.predict_frame" if side == "fuseflow" else "ColumnTransformer + torch"
        rows.append([f"{label}: pyfunc load_model + predict", f"{load_s:.2f}",
                     f"{latency(model.predict, one, args.latency_calls) * 1000:.2f}",
                     f"{latency(model.predict, big, max(3, args.latency_calls // 5)) * 1000:.1f}", f"{rmse:.1f}",
                     f"{mae:.1f}"])
        rows.append([f"{label}: {how} (no pyfunc)", "-", f"{latency(direct, one, args.latency_calls) * 1000:.2f}",
                     f"{latency(direct, big, max(3, args.latency_calls // 5)) * 1000:.1f}",
                     "same" if same else "DIFFERS", ""])
    return rows


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_of_tree(pid: int) -> float:
    """User + system CPU seconds of a running process and its children (the Prefect server's own work)."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--rows", type=int, default=20000, help="rows of diamonds.csv in the sample")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 32])
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=1, help="torch threads of every run (OMP_NUM_THREADS)")
    p.add_argument("--prefect", choices=["server", "background"], default="server",
                   help="fuseflow's Prefect API: a server started here, or the project's background server")
    p.add_argument("--latency-rows", type=int, default=10000)
    p.add_argument("--latency-calls", type=int, default=30, help="calls per 1-row latency (a fifth for the big batch)")
    p.add_argument("--bare", action="store_true", help="run the bare script once (used by the benchmark)")
    p.add_argument("--data", type=Path, help="with --bare: the CSV")
    p.add_argument("--experiment", default="bare-diamonds")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.bare:
        return bare(args)
    if not DIAMONDS.is_file():
        sys.exit(f"bench data not found: {DIAMONDS} (the shared data folder beside the project)")
    project = Path(tempfile.mkdtemp(prefix="fuseflow-bench-tables-"))
    data, taken = write_sample(project, args.rows, args.seed)
    (project / "pipelines.yaml").write_text(pipelines_yaml(data, args), encoding="utf-8")
    threads = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    server = None
    if args.prefect == "server":
        (project / "prefect-server").mkdir()
        server = PrefectServer(project / "prefect-server")
        print(f"project {project}; Prefect server ready in {server.wait():.1f} s at {server.url}", flush=True)
    else:
        print(f"project {project}; fuseflow's background Prefect server (started by the warm-up run)", flush=True)
    fuseflow_env = {**base_env(project, server.url if server else None), **threads}
    uri = fuseflow_env["MLFLOW_TRACKING_URI"]
    model_args = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--hidden",
                  *map(str, args.hidden), "--lr", str(args.lr), "--seed", str(args.seed), "--threads",
                  str(args.threads)]
    variants = {
        "bare": ([sys.executable, str(Path(__file__).resolve()), "--bare", "--data", str(data), *model_args],
                 {**base_env(project, None), **threads}),
        "fuseflow": ([*fuseflow_command(), "run", PIPELINE, "--no-cache"], fuseflow_env),
    }
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    server_cpus: list[float] = []  # the Prefect server's CPU during each fuseflow run (not in the run's CPU s)
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    try:  # untimed 1-epoch warm-ups: the store, bytecode caches, (background) Prefect server exist before round 1
        seconds, _ = timed([*variants["bare"][0], "--epochs", "1"], project, variants["bare"][1])
        print(f"warm-up bare {seconds:.1f} s", flush=True)
        seconds, _ = timed([*variants["fuseflow"][0], "--set", "train.epochs=1"], project, fuseflow_env)
        print(f"warm-up fuseflow {seconds:.1f} s", flush=True)
        names = list(variants)
        for round_no in range(args.rounds):
            for name in names if round_no % 2 == 0 else names[::-1]:
                argv, env = variants[name]
                before, server_before = cpu_of_children(), cpu_of_tree(server.proc.pid) if server else 0.0
                seconds, output = timed(argv, project, env)
                cpus[name].append(cpu_of_children() - before)
                if server and name == "fuseflow":
                    server_cpus.append(cpu_of_tree(server.proc.pid) - server_before)
                walls[name].append(seconds)
                if name == "bare":
                    line = next(x for x in output.splitlines() if x.startswith('{"run_id"'))
                    records[name].append(json.loads(line))
                else:
                    records[name].append(fuseflow_record(uri, run_id_of(output)))
            print(f"round {round_no + 1}: " + ", ".join(
                f"{n} {walls[n][-1]:.1f} s (train {records[n][-1]['phases'].get('train', 0):.1f} s)" for n in names),
                flush=True)
        held_out = sorted(set(range(len(DIAMONDS.read_text(encoding='utf-8').splitlines()) - 1)) - set(taken))
        latency_rows = measure_latency(uri, {n: records[n][-1]["run_id"] for n in names}, held_out, args)
    finally:
        if server:
            server.stop()
        else:
            timed([*fuseflow_command(), "server", "stop"], project, base_env(project, None))
    report(args, walls, cpus, server_cpus, records, latency_rows)


def report(args: argparse.Namespace, walls: dict[str, list[float]], cpus: dict[str, list[float]],
           server_cpus: list[float], records: dict[str, list[dict[str, Any]]], latency_rows: list[list[str]]) -> None:
    def med(name: str, key: str) -> float:
        return median([r[key] for r in records[name]])

    def phase(name: str, key: str) -> float:
        return median([r["phases"].get(key, 0.0) for r in records[name]])

    bare, flow = "bare", "fuseflow"
    label = {bare: "bare (pandas + ColumnTransformer + torch + MLflow)",
             flow: f"fuseflow run --no-cache ({'Prefect server' if args.prefect == 'server' else 'background server'})"}
    server = median(server_cpus) if server_cpus else None
    with_server = {bare: "-", flow: "-" if server is None else f"{median(cpus[flow]) + server:.2f}"}
    rows = [[label[n], f"{median(walls[n]):.2f}", f"{phase(n, 'train'):.2f}", f"{med(n, 'train_samples_per_s'):,.0f}",
             f"{med(n, 'test_rmse'):.1f}", f"{med(n, 'test_mae'):.1f}", f"{med(n, 'test_r2'):.4f}",
             f"{median(cpus[n]):.2f}", with_server[n], " ".join(f"{w:.1f}" for w in walls[n])] for n in (bare, flow)]
    rows.append(["ratio fuseflow / bare", f"{median(walls[flow]) / median(walls[bare]):.3f}",
                 f"{phase(flow, 'train') / phase(bare, 'train'):.3f}",
                 f"{med(flow, 'train_samples_per_s') / med(bare, 'train_samples_per_s'):.3f}", "", "", "",
                 f"{median(cpus[flow]) / median(cpus[bare]):.3f}",
                 "-" if server is None else f"{(median(cpus[flow]) + server) / median(cpus[bare]):.3f}", ""])
    print_table(f"diamonds price regression, {args.rows:,} rows, MLP {args.hidden}, {args.epochs} epochs, batch "
                f"{args.batch_size}, {args.threads} torch thread(s); medians of {args.rounds} interleaved pairs",
                ["variant", "wall s", "train phase s", "train samples/s", "test RMSE", "test MAE", "test R2", "CPU s",
                 "CPU s + Prefect server's", "all wall s"], rows)
    phase_rows = []
    for key in PHASES:
        b, f = phase(bare, key), phase(flow, key)
        phase_rows.append([key, f"{b:.2f}", f"{f:.2f}", f"{f - b:+.2f}"])
    b_rest = median([w - sum(r["phases"].values()) for w, r in zip(walls[bare], records[bare])])
    f_rest = median([w - sum(r["phases"].values()) for w, r in zip(walls[flow], records[flow])])
    others = sorted({k for r in records[flow] for k in r["phases"]} - set(PHASES))
    phase_rows += [[k, "-", f"{phase(flow, k):.2f}", ""] for k in others]
    phase_rows.append(["close-run (fuseflow: in rest)", f"{phase(bare, 'close-run'):.2f}", "-", ""])
    phase_rows.append(["rest (process exit, unaccounted)", f"{b_rest:.2f}", f"{f_rest:.2f}", f"{f_rest - b_rest:+.2f}"])
    print_table("phase timings, medians (fuseflow: its `timing/*` metrics; bare: the same phases, measured alike)",
                ["phase", "bare s", "fuseflow s", "fuseflow - bare s"], phase_rows)
    print_table(f"prediction latency of the logged models (medians of {args.latency_calls} calls for 1 row, "
                f"{max(3, args.latency_calls // 5)} for {args.latency_rows:,} rows; raw held-out rows of diamonds.csv)",
                ["model, call", "load s", "1 row ms", f"{args.latency_rows:,} rows ms", "held-out RMSE",
                 "held-out MAE"],
                latency_rows)


if __name__ == "__main__":
    main()
