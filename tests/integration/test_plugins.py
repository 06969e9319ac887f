"""A user's installed package adds components through the entry-point group `fuseflow.plugins`: here a tiny plugin
(a folder on PYTHONPATH with its distribution metadata, as `pip install` leaves it) adds a model type, a
preprocess step and a metric, and a pipeline that uses all three runs through Prefect into MLflow."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.helpers import cli_env, runs_of

PLUGIN = '''\
"""fuseflow-demo-plugin: a linear model, min-max scaling and balanced accuracy, registered in fuseflow's registries."""
from typing import Any, ClassVar, Literal

from tasks.registry import METRICS, MODELS, PREPROCESSORS, StrictModel


@MODELS.register
class LinearProbeConfig(StrictModel):
    type: Literal["linear_probe"]
    bias: bool = True
    modalities: ClassVar[frozenset[str]] = frozenset({"tabular"})

    def build(self, in_features: int, out_features: int) -> Any:
        import torch.nn as nn

        return nn.Linear(in_features, out_features, bias=self.bias)


@PREPROCESSORS.register
class MinMaxConfig(StrictModel):
    """Scale every feature to [0, 1] on train (composed with the scaling before it, so the model carries it)."""

    name: Literal["minmax"] = "minmax"
    modalities: ClassVar[frozenset[str]] = frozenset({"tabular"})

    def apply(self, X: dict, scaling: Any) -> dict:
        import numpy as np

        low, high = X["train"].min(0), X["train"].max(0)
        span = np.where(high > low, high - low, 1.0)
        scaling.compose(low, span)
        return {k: ((v - low) / span).astype(np.float32) for k, v in X.items()}


@METRICS.register("balanced_accuracy", task="classification", higher_is_better=True)
def balanced_accuracy(y_true: Any, proba: Any) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return balanced_accuracy_score(y_true, proba.argmax(1))
'''

PIPELINES = """\
pipelines:
  plugged:
    data: {source: sklearn, name: iris}
    preprocess: [standardize, minmax]
    model: {type: linear_probe}
    train: {backend: torch, epochs: 6, batch_size: 16, optimizer: {name: adam, lr: 0.1}}
    evaluate: {metrics: [accuracy, balanced_accuracy]}
"""


def install_plugin(folder: Path) -> Path:
    """The plugin as an installed distribution: its package and a `.dist-info` with the entry point."""
    package = folder / "fuseflow_demo_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN, encoding="utf-8")
    info = folder / "fuseflow_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fuseflow-demo-plugin\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[fuseflow.plugins]\ndemo = fuseflow_demo_plugin\n", encoding="utf-8")
    return folder


def _fuseflow(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_plugin_adds_a_model_a_preprocess_step_and_a_metric(prefect_harness, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "pipelines.yaml").write_text(textwrap.dedent(PIPELINES), encoding="utf-8")
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    without = {**cli_env(project), "MLFLOW_TRACKING_URI": uri}
    with_plugin = {**cli_env(project, install_plugin(tmp_path / "site")), "MLFLOW_TRACKING_URI": uri}

    missing = _fuseflow(project, without, "validate")  # not installed: unknown names, with the valid ones listed
    assert missing.returncode == 2
    assert "unknown model type 'linear_probe'" in missing.stderr and "mlp" in missing.stderr
    assert "unknown preprocess step 'minmax'" in missing.stderr
    assert "unknown metric 'balanced_accuracy'" in missing.stderr

    assert _fuseflow(project, with_plugin, "validate").returncode == 0
    done = _fuseflow(project, with_plugin, "run", "plugged")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    run, = runs_of(uri)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.type"] == "linear_probe"
    assert run.data.params["preprocess.1.name"] == "minmax"
    assert 0.5 < run.data.metrics["test_balanced_accuracy"] <= 1.0
    assert run.data.metrics["test_accuracy"] > 0.5

    # the logged model carries the composed scaling: on raw iris rows it predicts like the run's evaluation
    check = ("import mlflow, numpy as np, pandas as pd\n"
             "from sklearn.datasets import load_iris\n"
             f"mlflow.set_tracking_uri({uri!r})\n"
             f"model = mlflow.pyfunc.load_model('runs:/{run.info.run_id}/model')\n"
             "iris = load_iris(as_frame=True)\n"
             "pred = model.predict(iris.data)['label'].to_numpy()\n"
             "print((pred == np.asarray(iris.target_names)[iris.target]).mean())")
    accuracy = subprocess.run([sys.executable, "-c", check], cwd=project, env=with_plugin, capture_output=True,
                              text=True, timeout=300, check=True).stdout.strip().splitlines()[-1]
    assert float(accuracy) > 0.6
