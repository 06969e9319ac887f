"""The registries: one shorthand for every registry that takes one, components checked when they register, and
`load_components()` safe when several threads first use the configs at once and when an import fails."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from tasks.registry import FUSION_METHODS, MODELS, PREPROCESSORS, StrictModel

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("registry,value,expected", [
    (PREPROCESSORS, "standardize", {"name": "standardize"}),
    (PREPROCESSORS, {"standardize": None}, {"name": "standardize"}),
    (PREPROCESSORS, {"standardize": {"with_std": False}}, {"name": "standardize", "with_std": False}),
    (FUSION_METHODS, "greedy", {"method": "greedy"}),
    (FUSION_METHODS, {"weighted": {"per_class": True}}, {"method": "weighted", "per_class": True}),
    (FUSION_METHODS, {"method": "mean"}, {"method": "mean"}),
])
def test_one_shorthand_for_steps_and_methods(registry, value, expected):
    assert registry.normalize(value) == expected


def test_shorthand_options_that_are_not_a_mapping_say_what_is_expected():
    with pytest.raises(ValueError, match=r"`with_mean: False` gives no mapping of options \(are the options indented"):
        PREPROCESSORS.normalize({"with_mean": False})


def test_a_component_without_modalities_is_refused_when_it_registers():
    class NoModalities(StrictModel):
        type: Literal["no_modalities"]

    with pytest.raises(TypeError, match="NoModalities needs `modalities` to register as a model type"):
        MODELS.register(NoModalities)
    assert "no_modalities" not in MODELS.names()

    class Fine(StrictModel):
        type: Literal["mlp"]
        modalities: ClassVar[frozenset[str]] = frozenset({"tabular"})

    with pytest.raises(ValueError, match="model type 'mlp' is registered twice"):
        MODELS.register(Fine)


def _fresh_process(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_threads_that_first_use_the_configs_at_once_all_see_complete_registries():
    """Fusion members and sweep trials on a thread pool (or a Dask worker with several threads) may build the
    first schema at the same time: every thread waits for the registries instead of seeing a half-loaded one."""
    code = """
import threading, time
import tasks.registry as registry
from tasks.pipeline.spec import PipelineSpec

real = registry._import_package
registry._import_package = lambda name: (time.sleep(0.05), real(name))  # a slow disk: the threads overlap

raw = {"name": "p", "data": {"source": "sklearn", "name": "iris"}, "preprocess": ["standardize"],
       "model": {"type": "mlp", "hidden": [4]}, "train": {"backend": "torch"}}
barrier, errors, done = threading.Barrier(8), [], []

def first_use():
    barrier.wait()
    try:
        assert registry.TRAINERS.names() == ["hf_trainer", "torch"], registry.TRAINERS.names()
        done.append(PipelineSpec.model_validate(raw).train.trainer().__class__.__name__)
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=first_use) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(len(done), errors)
"""
    done = _fresh_process(code)
    assert done.stdout.strip() == "8 []", done.stdout + done.stderr


def test_a_failed_load_is_raised_and_tried_again():
    code = """
import tasks.registry as registry

real, calls = registry._import_package, []
def flaky(name):
    calls.append(name)
    if name == "tasks.models" and calls.count(name) == 1:
        raise ImportError("broken on purpose")
    real(name)
registry._import_package = flaky
try:
    registry.load_components()
except ImportError as exc:
    print("first:", exc)
print("second:", registry.MODELS.names(), bool(registry.TRAINERS.names()))
"""
    done = _fresh_process(code)
    assert "first: broken on purpose" in done.stdout, done.stdout + done.stderr
    assert "second: ['custom', 'hf_sequence_classification', 'mlp'] True" in done.stdout, done.stdout + done.stderr
