"""The validated shape of one pipeline (after `defaults:` are merged and `--set` overrides applied)."""
from __future__ import annotations

import warnings
from typing import Annotated, Any, Optional

from pydantic import BeforeValidator, Field, field_validator, model_validator

import tasks.data  # noqa: F401 - registers the data sources
import tasks.models  # noqa: F401 - registers the model types
import tasks.preprocess  # noqa: F401 - registers the preprocess steps
import tasks.train_torch  # noqa: F401 - registers the torch backend
import tasks.tokenize  # noqa: F401 - registers the tokenize step (text)
import tasks.train_hf  # noqa: F401 - registers the hf_trainer backend
from tasks.evaluate import EvaluateConfig
from tasks.fusion.config import FusionConfig
from tasks.preprocess import normalize_step
from tasks.promote import PromoteConfig, check_model_name
from tasks.registry import DATA_SOURCES, MODELS, PREPROCESSORS, TRAINERS, StrictModel
from tasks.runner_config import RunnerConfig
from tasks.schedule_config import ScheduleConfig
from tasks.sweep.config import SweepConfig



# `register` is the YAML key users write; the class attribute it shadows (ABCMeta.register) is not used on configs
warnings.filterwarnings("ignore", message='Field name "register" in "TrackingConfig" shadows', category=UserWarning)


class TrackingConfig(StrictModel):
    """Where the run is recorded. `uri` default: sqlite:///mlruns/mlflow.db (MLFLOW_TRACKING_URI wins)."""

    experiment: Optional[str] = Field(None, description="MLflow experiment (default: the pipeline's name)")
    uri: Optional[str] = None
    run_name: Optional[str] = None
    register: Optional[str] = Field(None, description="register each run's model under this registered model name")
    promote: Optional[PromoteConfig] = Field(None, description="move an alias to the new version when it is better")

    _name = field_validator("register")(classmethod(lambda cls, v: check_model_name(v)))

    @model_validator(mode="after")
    def _promote_needs_register(self) -> "TrackingConfig":
        if self.promote is not None and not self.register:
            raise ValueError("`promote` moves an alias of a registered model: set `register: NAME` too")
        return self


class PipelineSpec(StrictModel):
    """One pipeline: data -> preprocess -> model -> train -> evaluate."""

    name: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    seed: int = 42
    schedule: list[ScheduleConfig] = Field(default_factory=list)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    data: Optional[DATA_SOURCES.union()] = None
    preprocess: list[Annotated[PREPROCESSORS.union(), BeforeValidator(normalize_step)]] = Field(default_factory=list)
    model: Optional[MODELS.union()] = None
    train: Optional[TRAINERS.union()] = None
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    fusion: Optional[FusionConfig] = None
    sweep: Optional[SweepConfig] = None
    runner: RunnerConfig = Field(default_factory=RunnerConfig)

    @model_validator(mode="after")
    def _complete(self) -> "PipelineSpec":
        if self.sweep is not None and self.fusion is not None:
            raise ValueError("a pipeline is a sweep or a fusion, not both: sweep a training pipeline, and use "
                             "`sweep.fuse_top: K` to fuse its K best trials")
        if self.fusion is not None:
            extra = [key for key in ("data", "model", "train", "preprocess") if getattr(self, key)]
            if extra:
                raise ValueError(f"a fusion pipeline takes data, model and training from its members; remove "
                                 f"{', '.join(f'`{k}`' for k in extra)} (or move it into the member pipelines)")
            return self
        missing = [key for key in ("data", "model", "train") if getattr(self, key) is None]
        if missing:
            raise ValueError(f"a training pipeline needs `data`, `model` and `train` (missing: {', '.join(missing)})")
        return self

    @property
    def kind(self) -> str:
        """Which flow body runs this pipeline: 'sweep', 'fusion', 'tabular' (feature table) or 'text' (text columns)."""
        if self.sweep is not None:
            return "sweep"
        if self.fusion is not None:
            return "fusion"
        if getattr(self.data, "text_column", None) or getattr(self.data, "text_columns", None):
            return "text"
        return "tabular"

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    def preflight(self, base_dir: Any) -> list[tuple[tuple, str]]:
        """Checks beyond the schema (files, columns, importable callables): (key path, message) pairs."""
        issues: list[tuple[tuple, str]] = []
        for key in ("data", "model", "train"):
            section = getattr(self, key)
            check = getattr(section, "preflight", None)
            if check:
                issues += [((key,) + path, message) for path, message in check(base_dir)]
        missing = self.runner.missing_packages()
        if missing:
            issues.append((("runner", "type"), missing))
        return issues
