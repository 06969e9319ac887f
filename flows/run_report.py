"""The Prefect side of the two-way links: a markdown artifact on the flow run with the final metrics, the
registry decision and a link to the MLflow run in the MLflow UI (the MLflow run carries the flow run's id and URL)."""
from __future__ import annotations

import logging
import os
import re
from typing import Optional

from tasks.pipeline.summary import RunSummary

log = logging.getLogger("fuseflow")

MLFLOW_UI_ENV = "MLFLOW_UI_URL"


def mlflow_ui_base(tracking_uri: str) -> Optional[str]:
    """Where the MLflow UI answers: MLFLOW_UI_URL, else an http(s) tracking URI (a tracking server serves its UI)."""
    base = os.environ.get(MLFLOW_UI_ENV) or (tracking_uri if tracking_uri.startswith(("http://", "https://")) else None)
    return base.rstrip("/") if base else None


#: MLflow 3's UI opens experiments in its GenAI view, which hides training runs; this query (read by the UI's
#: hash router, `#/experiments/1?workflowType=machine_learning`) opens the classic runs view
CLASSIC_VIEW = "workflowType=machine_learning"


def mlflow_ui_url(base: str, route: str = "experiments") -> str:
    """A page of the MLflow UI (hash router) in its classic machine-learning view, e.g. route `experiments/1/runs`."""
    return f"{base.rstrip('/')}/#/{route.strip('/')}?{CLASSIC_VIEW}"


def mlflow_run_url(base: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI (classic view)."""
    return mlflow_ui_url(base, f"experiments/{experiment_id}/runs/{run_id}")


def mlflow_model_url(base: str, experiment_id: str, run_id: str, model_id: Optional[str]) -> str:
    """The run's model in the MLflow UI: its LoggedModel page (the experiment's Models tab), else the run's
    artifacts."""
    if model_id:
        return mlflow_ui_url(base, f"experiments/{experiment_id}/models/{model_id}")
    return mlflow_ui_url(base, f"experiments/{experiment_id}/runs/{run_id}/artifacts")


def logged_model_id(client: object, experiment_id: str, run_id: str) -> Optional[str]:
    """The id of the LoggedModel this run produced, if MLflow knows one (None on any error: a link only)."""
    try:
        found = client.search_logged_models(experiment_ids=[experiment_id],  # type: ignore[attr-defined]
                                            filter_string=f"source_run_id = '{run_id}'", max_results=1)
    except Exception:  # noqa: BLE001 - an older store or a tracking hiccup: fall back to the artifacts page
        return None
    return found[0].model_id if found else None


def artifact_key(pipeline: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes: one key per pipeline, versioned by run."""
    return "fuseflow-" + (re.sub(r"[^a-z0-9-]+", "-", pipeline.lower()).strip("-") or "pipeline") + "-metrics"


def report_markdown(pipeline: str, summary: RunSummary, run_url: Optional[str],
                    model_url: Optional[str] = None) -> str:
    """Markdown: the final metrics table, the MLflow run and its model (linked when a UI URL is known), the registry
    decision."""
    run_id, decision = summary.run_id, summary.registry
    lines = [f"### fuseflow `{pipeline}`", "", "| metric | value |", "| --- | ---: |"]
    lines += [f"| {name} | {value:.4f} |" for name, value in summary.metrics.items()]
    lines += ["", f"MLflow run: [{run_id}]({run_url})" if run_url else
              f"MLflow run: `{run_id}` (set {MLFLOW_UI_ENV} to get a link to the MLflow UI)",
              f"Model: [`{summary.model_uri}`]({model_url})" if model_url else f"Model: `{summary.model_uri}`"]
    if decision:
        lines += ["", f"Registry: {decision.message}"]
        if decision.metric:
            lines += ["", f"| version | {decision.metric} |", "| --- | ---: |",
                      f"| new: {decision.version} | {decision.value:.4f} |"]
            if decision.champion_version:
                held = decision.champion_value
                lines.append(f"| @{decision.alias} before: {decision.champion_version} | "
                             f"{'-' if held is None else f'{held:.4f}'} |")
    return "\n".join(lines) + "\n"


def publish_run_report(pipeline: str, summary: RunSummary, tracking_uri: str) -> Optional[str]:
    """Attach the report to the current flow run (key `fuseflow-<pipeline>-metrics`); the MLflow run URL, if any."""
    from prefect.artifacts import create_markdown_artifact

    run_url = model_url = None
    try:  # the MLflow run is complete and FINISHED: a missing link or artifact must not fail it
        base = mlflow_ui_base(tracking_uri)
        if base:
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri)
            experiment = client.get_run(summary.run_id).info.experiment_id
            run_url = mlflow_run_url(base, experiment, summary.run_id)
            model_url = mlflow_model_url(base, experiment, summary.run_id,
                                         logged_model_id(client, experiment, summary.run_id))
        create_markdown_artifact(report_markdown(pipeline, summary, run_url, model_url), key=artifact_key(pipeline),
                                 description=f"final metrics of MLflow run {summary.run_id}")
    except Exception as exc:  # noqa: BLE001
        log.warning("could not create the Prefect artifact: %s: %s", type(exc).__name__, exc)
    return run_url
