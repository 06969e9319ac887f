"""A team's shared store: MLflow on a real PostgreSQL database (started by the test on loopback), and a pruned TPE
sweep whose Optuna study goes, by default, into its own schema (`fuseflow_optuna`) of that same database — not into
MLflow's tables (both use Alembic's version table) and not into a sqlite file on one machine."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.helpers import IRIS_SEARCH, runs_of, write_pipelines
from tests.support.postgres import postgres_server
from tests.support.servers import RUN_TIMEOUT, ROOT, base_env

pytestmark = pytest.mark.e2e

PROJECT = IRIS_SEARCH.format(epochs=5, trials=6, startup=3) + "      max_concurrent: 1\n"


def test_the_study_lives_in_its_own_schema_of_mlflows_postgres_database(tmp_path):
    pytest.importorskip("psycopg")
    import optuna
    import sqlalchemy

    from tasks.sweep.study import open_storage

    with postgres_server() as url:
        project = tmp_path / "project"
        project.mkdir()
        write_pipelines(project, PROJECT)
        env = {**base_env(tmp_path / "prefect-home"), "MLFLOW_TRACKING_URI": url, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "flows.cli", "run", "iris-search"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        runs = runs_of(url)
        parent = next(r for r in runs if "fuseflow.sweep.metric" in r.data.tags)
        trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        storage = parent.data.tags["fuseflow.sweep.storage"]
        assert storage.startswith(url) and "search_path%3Dfuseflow_optuna" in storage
        assert not (project / ".fuseflow" / "sweeps").exists()  # no sqlite study on this machine
        study = optuna.load_study(study_name=parent.data.tags["fuseflow.sweep.study"], storage=open_storage(storage))
        assert len(study.trials) == len(trials) == 6
        assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as connection:
            tables = {(schema, name) for schema, name in connection.execute(sqlalchemy.text(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema IN ('public', 'fuseflow_optuna')"))}
        engine.dispose()
        assert ("fuseflow_optuna", "trials") in tables and ("public", "runs") in tables  # Optuna's and MLflow's
        assert ("public", "trials") not in tables and ("fuseflow_optuna", "runs") not in tables
        assert ("fuseflow_optuna", "alembic_version") in tables and ("public", "alembic_version") in tables
