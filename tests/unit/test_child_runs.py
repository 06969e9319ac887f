"""A stopped parent run closes the nested runs its dead workers left RUNNING, and only those."""
from __future__ import annotations

from tasks.tracking.child_runs import close_unfinished_children


def test_running_children_of_the_parent_are_closed_and_others_left_alone(tracking_uri):
    from mlflow import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("children")
    parent = client.create_run(exp).info.run_id
    other_parent = client.create_run(exp).info.run_id
    running = [client.create_run(exp, tags={MLFLOW_PARENT_RUN_ID: parent}).info.run_id for _ in range(2)]
    finished = client.create_run(exp, tags={MLFLOW_PARENT_RUN_ID: parent}).info.run_id
    client.set_terminated(finished, "FINISHED")
    stranger = client.create_run(exp, tags={MLFLOW_PARENT_RUN_ID: other_parent}).info.run_id

    closed = close_unfinished_children(client, parent, "KILLED", "parent run stopped by SIGTERM")

    assert sorted(closed) == sorted(running)
    for run_id in running:
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and run.data.tags["fuseflow.error"] == "parent run stopped by SIGTERM"
    assert client.get_run(finished).info.status == "FINISHED"
    assert client.get_run(stranger).info.status == "RUNNING"
    assert client.get_run(parent).info.status == "RUNNING"


def test_a_store_that_cannot_be_read_closes_nothing():
    class Gone:
        def get_run(self, run_id):
            raise ConnectionError("tracking server gone")

    assert close_unfinished_children(Gone(), "abc", "KILLED", "x") == []
