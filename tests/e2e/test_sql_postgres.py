"""`source: sql` against a real PostgreSQL server (started by the test on loopback; skipped where PostgreSQL is not
installed): `fuseflow validate` passes, a misspelt table exits 2 with "did you mean", a run trains from the table,
an unchanged rerun is reused and a changed table is read again; the password written in the URL shows nowhere
(output, log files, MLflow params, tags or the logged pipeline.yaml)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import runs_of, write_pipelines
from tests.support.postgres import postgres_server
from tests.support.servers import RUN_TIMEOUT, ROOT, base_env
from tests.support.tables import shop_frame

pytestmark = pytest.mark.e2e

#: the server trusts loopback connections, so any password is accepted: it only has to stay hidden
SECRET = "hunter2-Zq9"

PIPELINE = """\
pipelines:
  churn-pg:
    seed: 3
    data:
      source: sql
      url: "{url}"
      table: {table}
      label_column: label
    preprocess: [standardize]
    model: {{type: mlp, hidden: [16]}}
    train: {{backend: torch, epochs: 6, batch_size: 16, optimizer: {{name: adam, lr: 0.02}}}}
"""


def fuseflow(project: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)


def test_validate_and_train_from_a_postgres_table(tmp_path):
    pytest.importorskip("psycopg")
    import sqlalchemy
    from mlflow import MlflowClient

    with postgres_server("shop") as url:
        engine = sqlalchemy.create_engine(url)
        shop_frame().to_sql("customers", engine, index=False)
        with_password = url.replace("postgres@", f"postgres:{SECRET}@", 1)
        assert SECRET in with_password
        project = tmp_path / "project"
        project.mkdir()
        write_pipelines(project, PIPELINE.format(url=with_password, table="customers"))
        write_pipelines(project, PIPELINE.format(url=with_password, table="custmers"), name="bad.yaml")
        uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
        env = {**base_env(tmp_path / "prefect-home"), "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT),
               "FUSEFLOW_LOG_DIR": str(tmp_path / "logs")}
        outputs = []

        done = fuseflow(project, env, "validate")
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, outputs[-1]
        bad = fuseflow(project, env, "validate", "--file", "bad.yaml")
        outputs.append(bad.stdout + bad.stderr)
        assert bad.returncode == 2, outputs[-1]
        assert "pipelines.churn-pg.data.table: unknown table 'custmers'; did you mean 'customers'? " \
               "(tables: customers)" in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1

        for _ in range(2):  # the second run is an unchanged rerun: reused
            done = fuseflow(project, env, "run", "churn-pg")
            outputs.append(done.stdout + done.stderr)
            assert done.returncode == 0, outputs[-1][-4000:]
        shop_frame(n=40, seed=1).to_sql("customers", engine, index=False, if_exists="append")
        engine.dispose()
        done = fuseflow(project, env, "run", "churn-pg")  # the table changed, the config did not: computed
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, outputs[-1][-4000:]

        runs = sorted(runs_of(uri), key=lambda r: r.info.start_time)
        assert [r.info.status for r in runs] == ["FINISHED"] * 3
        assert [r.data.tags["fuseflow.cache.run"] for r in runs] == ["computed", "reused", "computed"]
        assert "test_accuracy" in runs[0].data.metrics and runs[0].data.metrics["test_accuracy"] > 0.6
        assert runs[0].data.params["data.url"] == url.replace("postgres@", "postgres:***@", 1)
        client = MlflowClient(uri)
        logged = Path(client.download_artifacts(runs[0].info.run_id, "pipeline.yaml", str(tmp_path))).read_text()
        assert "postgres:***@" in logged
        logs = [p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*") if p.is_file()]
        assert logs  # the runs' log files are checked too
        for run in runs:
            outputs += [str(run.data.params), str(run.data.tags)]
        for text in outputs + logs + [logged]:
            assert SECRET not in text
