"""Copy what a finished MLflow run produced into another run: every metric with its history, the dataset inputs, the
artifacts (evaluation report, plots) and the model, as a LoggedModel of the new run's own, so that an unchanged
rerun is complete on its own without computing anything again. Checkpoints are resume state of the original run
and are not copied."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from tasks.tracking.artifact_files import link_or_copy, local_artifact_dir

#: top-level artifacts not copied: the original's resume state, the config the new run has logged itself, and a
#: model folder of a run logged before LoggedModels (the model is copied as a LoggedModel instead)
SKIPPED_ARTIFACTS = frozenset({"checkpoints", "pipeline.yaml", "timings.json", "model"})


def copy_params(client: Any, origin: Any, target: Any) -> None:
    """The params the origin's steps logged (the feature table, dropped rows) that the new run does not have yet."""
    from mlflow.entities import Param

    new = [Param(k, v) for k, v in origin.data.params.items() if k not in target.data.params]
    for i in range(0, len(new), 100):
        client.log_batch(target.info.run_id, params=new[i:i + 100])


def copy_metrics(client: Any, origin: Any, run_id: str, started_ms: int) -> None:
    """Every metric of `origin` with its full history (steps kept, times shifted to the new run's start)."""
    from mlflow.entities import Metric

    from tasks.tracking.phases import METRIC_PREFIX

    shift = started_ms - origin.info.start_time
    keys = sorted(k for k in origin.data.metrics if not k.startswith(METRIC_PREFIX))  # timings: the new run's own
    batch = [Metric(key, m.value, m.timestamp + shift, m.step)
             for key in keys for m in client.get_metric_history(origin.info.run_id, key)]
    for i in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[i:i + 1000])


def copy_datasets(client: Any, origin: Any, run_id: str) -> None:
    """The dataset inputs of `origin` (same dataset rows, same context tags)."""
    from mlflow.entities import DatasetInput

    inputs = [DatasetInput(d.dataset, d.tags) for d in origin.inputs.dataset_inputs] if origin.inputs else []
    if inputs:
        client.log_inputs(run_id, datasets=inputs)


def copy_artifacts(client: Any, origin: Any, run_id: str, tracking_uri: str) -> list[str]:
    """Copy the artifacts of `origin` into run `run_id` (hard links between local stores); top-level names copied."""
    source, target = (local_artifact_dir(uri) for uri in (origin.info.artifact_uri,
                                                           client.get_run(run_id).info.artifact_uri))
    with tempfile.TemporaryDirectory(prefix="fuseflow-reuse-") as tmp:
        if source is None:  # a remote artifact store: download, then log
            from mlflow.artifacts import download_artifacts

            names = [Path(a.path).name for a in client.list_artifacts(origin.info.run_id)]
            names = [n for n in names if n not in SKIPPED_ARTIFACTS]
            for name in names:
                download_artifacts(run_id=origin.info.run_id, artifact_path=name, dst_path=tmp,
                                   tracking_uri=tracking_uri)
            staged = Path(tmp)
        else:
            names = sorted(p.name for p in source.iterdir() if p.name not in SKIPPED_ARTIFACTS) if source.is_dir() else []
            staged = Path(tmp) if target is None else target
            staged.mkdir(parents=True, exist_ok=True)
            for name in names:
                if (source / name).is_dir():
                    shutil.copytree(source / name, staged / name, copy_function=link_or_copy, dirs_exist_ok=True)
                else:
                    link_or_copy(str(source / name), str(staged / name))
        if target is None or source is None:
            for name in names:
                path = staged / name
                if path.is_dir():
                    client.log_artifacts(run_id, str(path), name)
                elif path.exists():
                    client.log_artifact(run_id, str(path))
    return names


def copy_run_outputs(client: Any, origin_run_id: str, run_id: str, tracking_uri: str) -> Any:
    """Copy metrics, params, dataset inputs, artifacts and the model of finished run `origin_run_id` into `run_id`
    (the model as a LoggedModel of `run_id`, tagged with the origin's model, its final metrics linked to it);
    returns the origin."""
    from tasks.tracking import tags
    from tasks.tracking.logged_model import copy_model, run_model_uri

    origin = client.get_run(origin_run_id)
    target = client.get_run(run_id)
    copy_metrics(client, origin, run_id, target.info.start_time)
    copy_params(client, origin, target)
    copy_datasets(client, origin, run_id)
    copy_artifacts(client, origin, run_id, tracking_uri)
    copy_model(client, run_model_uri(origin_run_id), run_id, tracking_uri,
               model_tags={tags.REUSED_RUN: origin_run_id})
    return origin
