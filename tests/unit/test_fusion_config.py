"""Fusion configuration: the `fusion:` section, member resolution, and every bad input as a located error (exit 2)
found before anything trains, with no MLflow run created."""
from __future__ import annotations

import pytest

from flows.cli import main
from tests.support.helpers import runs_of, write_pipelines

BASE = """\
defaults:
  seed: 3
pipelines:
  digits-tiny:
    data: {source: sklearn, name: digits}
    preprocess: [standardize]
    model: {type: mlp, hidden: [16]}
    train: {backend: torch, epochs: 2, batch_size: 64}
  iris-tiny:
    data: {source: sklearn, name: iris}
    model: {type: mlp, hidden: [16]}
    train: {backend: torch, epochs: 2}
  fused:
    fusion:
      members:
MEMBERS
      method: METHOD
"""


def _project(folder, members: str | None, method: str = "mean"):
    """The base file with these member lines (None: `members: []`) and method."""
    text = BASE.replace("MEMBERS\n", members) if members is not None else BASE.replace("\nMEMBERS\n", " []\n")
    text = text.replace("METHOD", method)
    return write_pipelines(folder, text)


def _run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err + captured.out


TWO = "        - pipeline: digits-tiny\n          set: {seed: 1}\n        - pipeline: digits-tiny\n          set: {seed: 2}\n"

CASES = [
    ("empty-members", None, "mean",
     ["pipelines.fused.fusion.members", "at least two members (got 0)"]),
    ("one-member", "        - pipeline: digits-tiny\n", "mean",
     ["pipelines.yaml:15:", "fusion.members", "at least two members (got 1)"]),
    ("unknown-pipeline", "        - pipeline: digits-tiny\n        - pipeline: digit-tiny\n", "mean",
     ["pipelines.yaml:17:", "fusion.members[1].pipeline", "unknown pipeline 'digit-tiny'", "did you mean 'digits-tiny'"]),
    ("label-space-mismatch", "        - pipeline: digits-tiny\n        - pipeline: iris-tiny\n", "mean",
     ["pipelines.yaml:17:", "fusion.members[1]", "share their data and label space", "data.name: iris vs digits"]),
    ("split-mismatch", TWO.replace("{seed: 2}", "{seed: 2, data.split.seed: 9}"), "mean",
     ["fusion.members[1]", "data.split.seed: 9 vs 3"]),
    ("soup-architectures", TWO.replace("{seed: 2}", "{seed: 2, model.hidden: [32]}"), "soup_uniform",
     ["pipelines.yaml:18:", "fusion.members[1]", "parameter '0.weight' differs", "one architecture"]),
    ("member-set-error", TWO.replace("{seed: 2}", "{model.hiden: [32]}"), "mean",
     ["fusion.members[1].set", "member pipeline 'digits-tiny'", "unknown key 'hiden'", "did you mean 'hidden'"]),
    ("member-is-fusion", "        - pipeline: digits-tiny\n        - pipeline: fused\n", "mean",
     ["fusion.members[1].pipeline", "'fused' is a fusion pipeline"]),
    ("member-neither", "        - pipeline: digits-tiny\n        - {seed: 1}\n", "mean",
     ["fusion.members[1]", "`pipeline: NAME`", "`model: URI`"]),
    ("uri-format", "        - pipeline: digits-tiny\n        - model: s3://bucket/model\n", "mean",
     ["fusion.members[1].model", "expected an MLflow model URI"]),
    ("uri-without-store", "        - pipeline: digits-tiny\n        - model: runs:/0123abcd/model\n", "mean",
     ["pipelines.yaml:17:", "fusion.members[1].model", "cannot resolve runs:/0123abcd/model", "does not exist"]),
    ("unknown-method", TWO, "greedyy",
     ["fusion.method", "unknown fusion method 'greedyy'", "did you mean 'greedy'"]),
    ("unknown-method-option", TWO, "{weighted: {per_clas: true}}",
     ["fusion.method.weighted.per_clas", "did you mean 'per_class'"]),
]


@pytest.mark.parametrize("case_id,members,method,fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_fusion_config_exits_2_before_anything_runs(case_id, members, method, fragments, project_dir, tracking_uri,
                                                         capsys):
    _project(project_dir, members, method)
    code, output = _run_cli(capsys, "run", "fused")
    assert code == 2, output
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    assert "Traceback" not in output
    assert runs_of(tracking_uri) == []
    assert not (project_dir / "mlruns").exists()


def test_fusion_pipeline_takes_no_training_sections(project_dir, tracking_uri, capsys):
    text = BASE.replace("MEMBERS\n", TWO).replace("METHOD", "mean").replace(
        "  fused:\n", "  fused:\n    data: {source: sklearn, name: digits}\n")
    write_pipelines(project_dir, text)
    code, output = _run_cli(capsys, "validate")
    assert code == 2
    assert "pipelines.fused" in output and "remove `data`" in output


@pytest.fixture(scope="module")
def uri_store(tmp_path_factory) -> tuple[str, str]:
    """A store holding one finished run with no model in it: (tracking URI, run id)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('uri-store') / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("other"))
    client.set_terminated(run.info.run_id)
    return uri, run.info.run_id


@pytest.mark.parametrize("uri,fragment", [
    ("runs:/{run}/model", "has no model at 'model'"),
    ("runs:/0123456789abcdef0123456789abcdef/model", "Run with id=0123456789abcdef0123456789abcdef not found"),
    ("models:/nope/1", "Model Version (name=nope, version=1) not found"),
    ("models:/nope@champion", "Registered Model with name=nope not found"),
])
def test_uri_that_does_not_resolve_is_a_config_error(uri, fragment, uri_store, project_dir, monkeypatch, capsys):
    store, run_id = uri_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    _project(project_dir, f"        - pipeline: digits-tiny\n        - model: {uri.format(run=run_id)}\n")
    before = len(runs_of(store))
    code, output = _run_cli(capsys, "run", "fused")
    assert code == 2, output
    assert "fusion.members[1].model" in output and "cannot resolve" in output
    assert fragment in output, output
    assert len(runs_of(store)) == before


def test_members_resolve_with_their_overrides_and_one_split(project_dir, tracking_uri):
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve

    members = TWO.replace("set: {seed: 2}", "set: {seed: 2, model.hidden: [32, 8]}\n          name: wide")
    path = _project(project_dir, members, "{greedy: {rounds: 5}}")
    resolved = resolve(load_project(path), "fused")
    spec = resolved.spec
    assert spec.kind == "fusion" and resolved.modality == "tabular"
    assert spec.fusion.method.rounds == 5
    members = resolved.fusion.members
    assert [m.name for m in members] == ["member0", "wide"]
    assert [m.spec.seed for m in members] == [1, 2]  # `seed` varies initialisation ...
    assert [m.spec.data.split.seed for m in members] == [3, 3]  # ... while the split is the fusion's
    assert members[1].spec.model.hidden == [32, 8]
    assert members[1].overrides == {"data.split.seed": 3, "seed": 2, "model.hidden": [32, 8]}
    assert resolved.fusion.data["name"] == "digits"


def test_fusion_method_forms_are_equivalent():
    from tasks.fusion.config import FusionConfig

    members = [{"pipeline": "a"}, {"model": "models:/m@champion"}]
    short = FusionConfig.model_validate({"members": members, "method": {"weighted": {"per_class": True}}})
    dumped = FusionConfig.model_validate(short.model_dump(mode="json"))
    assert dumped.method == short.method and short.method.per_class
    assert FusionConfig.model_validate({"members": members, "method": "greedy"}).method.rounds == 25
