"""In a real headless Chromium, what a user clicks: the Prefect UI's Custom run form of a served pipeline (typed
`hyperparameters` fields), a changed `epochs` submitted, the flow run's fuseflow artifact, its link to the MLflow run
page, and the changed param on that page.

Real servers, started once for the module, each in its own session and stopped by PID in fixture finalizers (serve
before the servers): `prefect server start` with its UI, `mlflow server` over the project's sqlite store, and
`fuseflow serve` with MLFLOW_UI_URL pointing at that MLflow UI. Skips only where no Chromium executable is found."""
from __future__ import annotations

import re
import sys
import time

import pytest

from tests.support.browser import (NO_CHROMIUM, chromium_page, find_chromium, mlflow_ui_server, prefect_ui_server,
                                   shot_on_failure)
from tests.support.helpers import write_pipelines
from tests.support.servers import START_TIMEOUT, Api, base_env, start, stop_group, tail, wait_for

CHROMIUM = find_chromium()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)]

PIPELINE = "iris-browser"
YAML_EPOCHS, NEW_EPOCHS = 2, 3
PROJECT = f"""\
pipelines:
  {PIPELINE}:
    description: tiny iris MLP started from the Prefect UI in a browser
    data: {{source: sklearn, name: iris}}
    preprocess: [{{standardize: {{}}}}]
    model: {{type: mlp, hidden: [8]}}
    train: {{backend: torch, epochs: {YAML_EPOCHS}, batch_size: 32}}
    evaluate: {{metrics: [accuracy]}}
"""
EPOCHS_LABEL = re.compile(r"^epochs( \(Optional\))?$")  # the field's title is the last key component
MLFLOW_RUN_HREF = re.compile(r"#/experiments/(\d+)/runs/([0-9a-f]{32})(\?|$)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Prefect server + UI, MLflow server + UI, `fuseflow serve` of the tiny project; yields what the tests need."""
    folder = tmp_path_factory.mktemp("browser-stack")
    project = folder / "project"
    project.mkdir()
    write_pipelines(project, PROJECT)
    db = project / "mlruns" / "mlflow.db"
    with prefect_ui_server(folder) as (api, home), mlflow_ui_server(db, folder) as mlflow_url:
        env = {**base_env(home), "PREFECT_API_URL": api.url, "PREFECT_RUNNER_POLL_FREQUENCY": "1",
               "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "MLFLOW_UI_URL": mlflow_url,
               "FUSEFLOW_LOG_DIR": str(project / "logs"),
               "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(project / "prefect-results")}
        log = project / "serve.log"
        serve = start([sys.executable, "-m", "flows.cli", "serve", "--file", str(project / "pipelines.yaml")], env, log,
                      cwd=project)
        try:
            wait_for(lambda: "Ctrl-C stops serving" in log.read_text(), START_TIMEOUT, "fuseflow serve", serve, log)
            deployment = wait_for(lambda: api.deployment(PIPELINE), START_TIMEOUT, "the deployment", serve, log)
            yield {"api": api, "ui": api.url.removesuffix("/api"), "mlflow": mlflow_url, "db": db, "log": log,
                   "deployment": deployment}
        finally:
            stop_group(serve)


@pytest.fixture(scope="module")
def page():
    """One headless Chromium page (fresh profile) for the module."""
    with chromium_page(CHROMIUM) as browser_page:
        yield browser_page


def open_custom_run_form(page, stack) -> None:
    """From the Prefect UI's root (its default UI): Deployments -> the pipeline -> Run -> Custom run."""
    page.goto(stack["ui"] + "/", wait_until="networkidle")
    page.get_by_role("link", name="Deployments", exact=True).click()
    page.get_by_role("link", name=PIPELINE, exact=True).click()
    page.wait_for_url(re.compile(rf".*/deployments/deployment/{stack['deployment']['id']}.*"))
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Custom run").click()
    page.get_by_label(EPOCHS_LABEL).wait_for()


def submit(page, tries: int = 3) -> None:
    """Submit the form; on a loaded machine the server's sqlite database may answer 503 (nothing created, the form
    stays open with an error toast): submit again, as the user would."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(tries):
        page.get_by_role("button", name="Submit", exact=True).click()
        try:  # a created run leaves the form for the deployment's Runs tab
            page.wait_for_url(re.compile(r".*/deployments/deployment/[0-9a-f-]{36}\?.*tab=Runs.*"))
            return
        except PlaywrightTimeout:
            if attempt == tries - 1 or not page.url.split("?")[0].endswith("/run"):
                raise


def flow_runs(api: Api, deployment_id: str) -> list[dict]:
    return api.http.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [deployment_id]}}}).json()


def test_custom_run_form_rejects_an_out_of_range_epochs_value(page, stack, tmp_path):
    api, deployment = stack["api"], stack["deployment"]
    with shot_on_failure(page, tmp_path / "rejected.png"):
        before = len(flow_runs(api, deployment["id"]))
        open_custom_run_form(page, stack)
        epochs = page.get_by_label(EPOCHS_LABEL)
        assert epochs.get_attribute("type") == "number" and epochs.get_attribute("min") == "1"
        epochs.fill("0")
        form_url = page.url
        page.get_by_role("button", name="Submit", exact=True).click()
        page.wait_for_timeout(2000)
        assert "greater than or equal to 1" in epochs.evaluate("e => e.validationMessage")
        assert page.url == form_url, "an out-of-range value must keep the form open"
        assert len(flow_runs(api, deployment["id"])) == before, "no flow run may be created from a rejected form"


def test_changed_epochs_from_the_form_reaches_the_mlflow_run_page(page, stack, tmp_path):
    from mlflow import MlflowClient

    api = stack["api"]
    with shot_on_failure(page, tmp_path / "form-to-mlflow.png"):
        open_custom_run_form(page, stack)
        epochs = page.get_by_label(EPOCHS_LABEL)
        assert epochs.input_value() == str(YAML_EPOCHS), "the form's default is the YAML's value"
        epochs.fill(str(NEW_EPOCHS))
        submit(page)
        page.get_by_role("button", name="View run").click()  # the toast after a submitted run
        page.wait_for_url(re.compile(r".*/runs/flow-run/[0-9a-f-]{36}.*"))
        flow_run_id = re.search(r"/runs/flow-run/([0-9a-f-]{36})", page.url).group(1)
        final = api.wait_final(flow_run_id, stack["log"])
        assert final["state"]["type"] == "COMPLETED", f"{final['state']}\n{tail(stack['log'])}"
        assert final["parameters"]["hyperparameters"]["train"]["epochs"] == NEW_EPOCHS

        page.reload(wait_until="networkidle")
        page.get_by_role("tab", name="Artifacts").click()
        page.get_by_role("link").filter(has_text=f"fuseflow-{PIPELINE}-metrics").click()
        page.wait_for_url(re.compile(r".*/artifacts/artifact/[0-9a-f-]{36}.*"))
        links = page.locator(f'a[href^="{stack["mlflow"]}/"]')
        links.first.wait_for()
        deadline, hrefs, seen = time.monotonic() + 20, [], []
        while not hrefs and time.monotonic() < deadline:  # the UI may render the markdown again as it polls
            seen = links.evaluate_all("(anchors) => anchors.map((a) => a.getAttribute('href'))")
            hrefs = [href for href in seen if MLFLOW_RUN_HREF.search(href or "")]
            if not hrefs:
                page.wait_for_timeout(500)
        assert hrefs, f"no link to an MLflow run page in the artifact; hrefs: {seen}, texts: {links.all_inner_texts()}"
        experiment_id, run_id = MLFLOW_RUN_HREF.search(hrefs[0]).group(1, 2)
        page.locator(f'a[href="{hrefs[0]}"]').first.click()
        page.wait_for_url(re.compile(rf".*/runs/{run_id}.*"))

        page.get_by_role("heading", name=re.compile(r"^Parameters \(\d+\)$")).wait_for()
        page.get_by_placeholder("Search parameters").fill("train.epochs")
        row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="train.epochs", exact=True))
        row.first.wait_for()
        assert row.first.get_by_role("cell").nth(1).inner_text().strip() == str(NEW_EPOCHS)

    run = MlflowClient(f"sqlite:///{stack['db']}").get_run(run_id)
    assert run.info.experiment_id == experiment_id and run.data.tags["prefect.flow_run_id"] == flow_run_id
    assert run.data.params["train.epochs"] == str(NEW_EPOCHS)
    assert run.data.params["train.batch_size"] == "32", "an unchanged field changes nothing"
