"""The typed `hyperparameters` form of a deployment: types, bounds and enums from the spec classes, the YAML's values
as defaults, `ui.fields`, what a submitted form changes, nested overrides, run names and MLflow UI links."""
from __future__ import annotations

import pytest

from tasks.errors import ConfigError
from tests.support.helpers import write_pipelines

PIPELINES = """\
pipelines:
  iris-form:
    seed: 7
    data: {source: sklearn, name: iris, split: {validation: 0.2, test: 0.2}}
    model: {type: mlp, hidden: [16, 8], dropout: 0.1}
    train:
      backend: torch
      epochs: 12
      optimizer: {name: adamw, lr: 0.002}
      early_stopping: {monitor: val_loss, patience: 3}
  iris-picked:
    data: {source: sklearn, name: iris}
    model: {type: mlp, hidden: [4]}
    train: {backend: torch, epochs: 2, optimizer: {lr: 0.01}}
    ui: {fields: [train.epochs, train.optimizer, model.hidden]}
"""


@pytest.fixture
def project(project_dir):
    from flows.spec.project import load_project

    return load_project(write_pipelines(project_dir, PIPELINES))


def _spec(project, name, overrides=None):
    from flows.spec.overrides import parse_overrides
    from flows.spec.resolve import resolve

    return resolve(project, name, parse_overrides(overrides)).spec


def _props(schema, *path):
    for part in path:
        schema = schema["properties"][part]
    return schema


def test_fields_are_typed_bounded_and_default_to_the_yaml(project):
    from flows.form_schema import hyperparameter_defaults, hyperparameters_schema

    spec = _spec(project, "iris-form")
    schema = hyperparameters_schema(spec)
    epochs = _props(schema, "train", "epochs")
    assert epochs == {"type": "integer", "minimum": 1, "default": 12, "title": "epochs",
                      "description": "`train.epochs`"}
    lr = _props(schema, "train", "optimizer", "lr")
    assert (lr["type"], lr["exclusiveMinimum"], lr["default"], lr["title"]) == ("number", 0, 0.002, "lr")
    assert _props(schema, "train", "optimizer", "name")["enum"] == ["sgd", "adam", "adamw"]
    hidden = _props(schema, "model", "hidden")
    assert hidden["type"] == "array" and hidden["items"] == {"type": "integer", "minimum": 1}
    assert hidden["default"] == [16, 8]
    assert _props(schema, "model", "activation")["enum"][0] == "relu"  # a pydantic default, shown too
    assert _props(schema, "seed")["default"] == 7
    assert _props(schema, "data", "split", "validation")["default"] == 0.2
    assert _props(schema, "train", "early_stopping", "patience")["default"] == 3
    train = _props(schema, "train")["properties"]
    assert "backend" not in train and "device" not in train and "grad_clip" not in train  # const, infra, None
    assert "type" not in _props(schema, "model")["properties"]
    assert set(_props(schema, "data")["properties"]) == {"split"}
    defaults = hyperparameter_defaults(spec)
    assert schema["default"] == defaults and defaults["train"]["optimizer"]["lr"] == 0.002


def test_the_schema_refuses_what_the_spec_refuses(project):
    import jsonschema

    from flows.form_schema import hyperparameter_defaults, hyperparameters_schema

    spec = _spec(project, "iris-form")
    schema = hyperparameters_schema(spec)
    good = hyperparameter_defaults(spec)
    jsonschema.validate(good, schema)
    for path, value in [(("train", "epochs"), 0), (("train", "optimizer", "lr"), -1), (("train", "epochs"), 2.5),
                        (("train", "optimizer", "name"), "lion"), (("model", "hidden"), [0]),
                        (("data", "split", "test"), 1.0)]:
        bad = hyperparameter_defaults(spec)
        node = bad
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**good, "train": {**good["train"], "epoch": 3}}, schema)


def test_ui_fields_pick_fields_and_groups_in_their_order(project):
    from flows.form_schema import hyperparameters_schema

    schema = hyperparameters_schema(_spec(project, "iris-picked"))
    assert list(schema["properties"]) == ["train", "model"]
    assert list(_props(schema, "train")["properties"]) == ["epochs", "optimizer"]
    assert "lr" in _props(schema, "train", "optimizer")["properties"]
    assert list(_props(schema, "model")["properties"]) == ["hidden"]
    assert schema["default"] == {"train": {"epochs": 2, "optimizer": {
        k: v["default"] for k, v in _props(schema, "train", "optimizer")["properties"].items()}},
        "model": {"hidden": [4]}}


def test_an_unknown_ui_field_is_a_located_config_error(project_dir):
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve

    text = PIPELINES.replace("[train.epochs, train.optimizer, model.hidden]", "[train.epochs, train.optimzer.lr]")
    project = load_project(write_pipelines(project_dir, text))
    with pytest.raises(ConfigError) as err:
        resolve(project, "iris-picked")
    [issue] = err.value.issues
    assert str(issue).startswith("pipelines.yaml:") or "pipelines.yaml:" in str(issue)
    assert "ui.fields[1]" in str(issue)
    assert "'train.optimzer.lr' is not a tunable field of this pipeline; did you mean 'train.optimizer.lr'?" in str(issue)
    extra = PIPELINES.replace("ui: {fields:", "ui: {colour: red, fields:")
    with pytest.raises(ConfigError, match="colour"):
        resolve(load_project(write_pipelines(project_dir, extra)), "iris-picked")


def test_only_changed_fields_become_overrides_and_overrides_win(project):
    from flows.form_schema import changed_values, hyperparameter_defaults, merged_overrides

    spec = _spec(project, "iris-form")
    form = hyperparameter_defaults(spec)
    assert changed_values(spec, form) == {}
    assert changed_values(spec, None) == {}
    form["train"]["epochs"] = 3
    form["train"]["optimizer"]["lr"] = 0.003
    form["model"]["hidden"] = [16, 8]  # unchanged (as a list)
    form["data"]["split"]["validation"] = 0.2  # unchanged
    assert changed_values(spec, form) == {"train.epochs": 3, "train.optimizer.lr": 0.003}
    merged = merged_overrides(spec, form, {"train": {"epochs": 5}, "model.dropout": 0.2})
    assert merged == {"train.epochs": 5, "train.optimizer.lr": 0.003, "model.dropout": 0.2}
    changed = _spec(project, "iris-form", merged)
    assert (changed.train.epochs, changed.train.optimizer.lr, changed.model.dropout) == (5, 0.003, 0.2)
    assert changed.train.optimizer.name == "adamw" and changed.model.hidden == [16, 8]


def test_nested_overrides_are_merged_as_dotted_keys(project):
    from flows.spec.overrides import flatten_dotted, parse_overrides

    assert flatten_dotted({"train": {"epochs": 3, "optimizer": {"lr": 0.1}}, "preprocess.0.standardize": {}}) == {
        "train.epochs": 3, "train.optimizer.lr": 0.1, "preprocess.0.standardize": {}}
    spec = _spec(project, "iris-form", {"train": {"epochs": 3}})  # used to fail: "missing key 'backend'"
    assert spec.train.epochs == 3 and spec.train.backend == "torch" and spec.train.optimizer.lr == 0.002
    with pytest.raises(ConfigError, match=r"--set train.epochs=many: pipelines.iris-form.train.epochs: Input should be a valid integer"):
        _spec(project, "iris-form", {"train": {"epochs": "many"}})
    assert [o.key for o in parse_overrides({"train.optimizer": {"lr": 0.1}})] == ["train.optimizer.lr"]


def test_run_names_say_what_changed():
    from flows.run_names import is_generated_name, run_name

    assert run_name("digits-mlp", {}) == "digits-mlp"
    assert run_name("digits-mlp", {"train.optimizer.lr": 0.003, "train.epochs": 3}) == "digits-mlp lr=0.003 epochs=3"
    assert run_name("p", {"model.hidden": [64, 64], "train.optimizer.name": "sgd", "train.scheduler.name": "cosine"}) \
        == "p hidden=[64,64] optimizer.name=sgd scheduler.name=cosine"
    assert len(run_name("p", {f"k{i}": "x" * 20 for i in range(20)})) == 200


def test_prefects_generated_names_are_recognised_and_typed_ones_kept():
    from prefect.utilities.names import generate_slug

    from flows.run_names import is_generated_name

    assert all(is_generated_name(generate_slug(2)) for _ in range(500))
    for typed in ("digits-mlp", "my lr test", "iris-served", "Casual-Panda", "lr=0.1", "", None):
        assert not is_generated_name(typed), typed


def test_mlflow_links_open_the_classic_runs_view():
    from flows.run_report import mlflow_model_url, mlflow_run_url, mlflow_ui_url

    assert mlflow_run_url("http://ui:5000", "3", "abc") == \
        "http://ui:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert mlflow_ui_url("http://ui:5000/") == "http://ui:5000/#/experiments?workflowType=machine_learning"
    assert mlflow_model_url("http://ui", "3", "abc", "m-123") == \
        "http://ui/#/experiments/3/models/m-123?workflowType=machine_learning"
    assert mlflow_model_url("http://ui", "3", "abc", None) == \
        "http://ui/#/experiments/3/runs/abc/artifacts?workflowType=machine_learning"


def test_run_description_links_the_prefect_flow_run_and_deployment():
    from flows.tracking_run import run_description
    from tasks.tracking import tags

    context = {tags.FLOW_RUN_ID: "f-1", tags.FLOW_RUN_URL: "http://prefect/runs/flow-run/f-1",
               tags.DEPLOYMENT: "digits-mlp"}
    text = run_description("digits-mlp", {"train.epochs": 3, "model.hidden": [8]}, context,
                           "http://prefect/deployments/deployment/d-1")
    assert "**fuseflow pipeline `digits-mlp`**" in text
    assert "- `train.epochs` = `3`" in text and "- `model.hidden` = `[8]`" in text
    assert "Prefect flow run: [f-1](http://prefect/runs/flow-run/f-1)" in text
    assert "Prefect deployment: [fuseflow/digits-mlp](http://prefect/deployments/deployment/d-1)" in text
    assert "nothing changed" in run_description("p", None, {})
