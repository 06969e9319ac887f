"""The baseline of the benchmarks: what a user would write without fuseflow, doing the same work as
`fuseflow run` of the benchmark pipelines -- scikit-learn data, seeded stratified 70/15/15 split, standardize,
an MLP trained by a plain PyTorch loop with per-epoch validation, and the same MLflow record (params, the config
as pipeline.yaml, the dataset input, per-epoch metrics, test metrics, evaluation report and plots, a pt2 model
with an input example). No Prefect, no caching, no checkpoints.

    python bench/bare_train.py --dataset iris --hidden 16 --epochs 1 --batch-size 16
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["iris", "digits"], default="iris")
    p.add_argument("--hidden", type=int, nargs="+", default=[16])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--experiment", default="bare")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import pandas as pd
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import yaml
    from sklearn import datasets
    from sklearn import metrics as skm
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    bunch = getattr(datasets, f"load_{args.dataset}")(as_frame=True)
    X, y = bunch.data.to_numpy(np.float32), bunch.target.to_numpy(np.int64)
    X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, test_size=0.3, random_state=args.seed, stratify=y)
    X_val, X_te, y_val, y_te = train_test_split(X_rest, y_rest, test_size=0.5, random_state=args.seed, stratify=y_rest)
    scaler = StandardScaler().fit(X_tr)
    X_tr_s, X_val_s, X_te_s = (scaler.transform(a).astype(np.float32) for a in (X_tr, X_val, X_te))

    torch.manual_seed(args.seed)
    layers, width = [], X.shape[1]
    for size in args.hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    model = nn.Sequential(*layers, nn.Linear(width, len(bunch.target_names)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(args.seed)
    Xt, yt = torch.from_numpy(X_tr_s), torch.from_numpy(y_tr)
    Xv, yv = torch.from_numpy(X_val_s), torch.from_numpy(y_val)

    config = {"seed": args.seed, "data": {"source": "sklearn", "name": args.dataset},
              "model": {"type": "mlp", "hidden": args.hidden},
              "train": {"epochs": args.epochs, "batch_size": args.batch_size,
                        "optimizer": {"name": "adamw", "lr": args.lr}}}
    mlflow.set_experiment(args.experiment)
    with mlflow.start_run() as run:
        mlflow.log_params({"seed": args.seed, "data.name": args.dataset, "model.hidden": json.dumps(args.hidden),
                           "train.epochs": args.epochs, "train.batch_size": args.batch_size,
                           "train.optimizer.lr": args.lr})
        mlflow.log_text(yaml.safe_dump(config), "pipeline.yaml")
        frame = pd.DataFrame(X_tr_s, columns=[str(c) for c in bunch.data.columns]).assign(label=y_tr)
        dataset = mlflow.data.from_pandas(frame, name=f"sklearn:{args.dataset}", targets="label")
        mlflow.log_input(dataset, context="training")

        history = []
        for epoch in range(1, args.epochs + 1):
            model.train()
            order = torch.randperm(len(Xt), generator=generator)
            total = 0.0
            for i in range(0, len(order), args.batch_size):
                idx = order[i:i + args.batch_size]
                loss = F.cross_entropy(model(Xt[idx]), yt[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
            model.eval()
            with torch.no_grad():
                out = model(Xv)
            pred = out.argmax(-1)
            row = {"train_loss": total / len(order), "val_loss": F.cross_entropy(out, yv).item(),
                   "val_accuracy": (pred == yv).float().mean().item(),
                   "val_f1_macro": skm.f1_score(y_val, pred.numpy(), average="macro")}
            mlflow.log_metrics(row, step=epoch)
            history.append({"epoch": epoch, **row})

        with torch.no_grad():
            proba = model(torch.from_numpy(X_te_s)).softmax(-1).numpy()
        pred = proba.argmax(-1)
        test = {"test_accuracy": skm.accuracy_score(y_te, pred),
                "test_f1_macro": skm.f1_score(y_te, pred, average="macro"),
                "test_f1_weighted": skm.f1_score(y_te, pred, average="weighted"),
                "test_precision_macro": skm.precision_score(y_te, pred, average="macro", zero_division=0),
                "test_recall_macro": skm.recall_score(y_te, pred, average="macro"),
                "test_log_loss": skm.log_loss(y_te, proba, labels=list(range(proba.shape[1])))}
        mlflow.log_metrics(test, step=args.epochs)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            matrix = skm.confusion_matrix(y_te, pred)
            per_class = skm.classification_report(y_te, pred, output_dict=True, zero_division=0)
            report = {"metrics": test, "per_class": per_class, "confusion_matrix": matrix.tolist()}
            (folder / "evaluation_report.json").write_text(json.dumps(report, indent=2, default=str))
            fig, ax = plt.subplots(figsize=(5, 5))
            ax.imshow(matrix, cmap="Blues")
            fig.savefig(folder / "confusion_matrix.png", dpi=100)
            plt.close(fig)
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.plot([h["train_loss"] for h in history], label="train_loss")
            ax.plot([h["val_loss"] for h in history], label="val_loss")
            ax.legend()
            fig.savefig(folder / "learning_curve.png", dpi=100)
            plt.close(fig)
            mlflow.log_artifacts(str(folder), "evaluation")

        mean, scale = torch.tensor(scaler.mean_, dtype=torch.float32), torch.tensor(scaler.scale_, dtype=torch.float32)

        class Inference(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.core = model
                self.register_buffer("mean", mean)
                self.register_buffer("scale", scale)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.core((x - self.mean) / self.scale).argmax(-1)

        mlflow.pytorch.log_model(Inference().eval(), name="model", serialization_format="pt2",
                                 input_example=np.ascontiguousarray(X_te[:5]),
                                 pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    print(json.dumps({"run_id": run.info.run_id, **test}))


if __name__ == "__main__":
    main()
