"""The validated shape of one pipeline (after `defaults:` are merged and `--set` overrides applied), and the checks
that need the whole pipeline: does each step, the model and the trainer fit the data's modality."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from tasks.evaluate.config import EvaluateConfig
from tasks.fusion.config import FusionConfig
from tasks.pipeline.retries import MAX_RETRIES, RetryPolicy, StepName, StepOptions, _duration
from tasks.pipeline.runner import RunnerConfig
from tasks.pipeline.triggers import TriggerConfig
from tasks.pipeline.schedule import ScheduleConfig
from tasks.pipeline.ui import UiConfig, ui_issues
from tasks.scoring.config import ScoringConfig
from tasks.registry import DATA_SOURCES, LOSSES, MAX_SEED, MODELS, PREPROCESSORS, TRAINERS, StrictModel
from tasks.sweep.config import SweepConfig
from tasks.tracking.config import TrackingConfig

Issue = tuple[tuple, str]  # (key path in the pipeline, message)
Kind = Literal["training", "fusion", "sweep", "scoring"]


class PipelineSpec(StrictModel):
    """One pipeline: data -> preprocess -> model -> train -> evaluate (or a fusion of members, or a sweep)."""

    name: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    seed: int = Field(42, ge=0, le=MAX_SEED)
    schedule: list[ScheduleConfig] = Field(default_factory=list)
    triggers: list[TriggerConfig] = Field(default_factory=list, description="Prefect events that start this "
                                          "pipeline under `fuseflow serve`: `- on: promoted, model: NAME`")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    data: Optional[DATA_SOURCES.field_type()] = None
    preprocess: list[PREPROCESSORS.field_type()] = Field(default_factory=list)
    model: Optional[MODELS.field_type()] = None
    train: Optional[TRAINERS.field_type()] = None
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    fusion: Optional[FusionConfig] = None
    sweep: Optional[SweepConfig] = None
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    predict: Optional[ScoringConfig] = Field(None, description="a scoring pipeline: a logged model applied to new "
                                             "rows (instead of data/model/train)")
    retries: int = Field(0, ge=0, le=MAX_RETRIES, description="tries after a failed one, for every step (Prefect "
                         "task retries; a retried `train` resumes from its last checkpoint)")
    retry_delay_seconds: float = Field(10.0, ge=0, le=86400, description="wait before the first retry, doubled "
                                       "before each later one")
    timeout: Optional[Union[float, str]] = Field(None, description="seconds or a duration ('30m', '2h') one try of "
                                                 "any step may take")
    steps: dict[StepName, StepOptions] = Field(default_factory=dict, description="per step: {train: {retries: 2, "
                                               "retry_delay_seconds: 30, timeout: 6h}}")
    ui: Optional[UiConfig] = Field(None, description="the Prefect Custom run form: `{fields: [train.epochs, "
                                   "train.optimizer.lr]}` picks its typed fields")

    _timeout = field_validator("timeout")(classmethod(lambda cls, v: _duration(v)))

    @model_validator(mode="after")
    def _complete(self) -> "PipelineSpec":
        if self.predict is not None:
            extra = [key for key in ("data", "model", "train", "preprocess", "fusion", "sweep") if getattr(self, key)]
            if extra:
                raise ValueError(f"a scoring pipeline (`predict:`) takes its rows from `predict.data` and its model "
                                 f"from `predict.model`; remove {', '.join(f'`{k}`' for k in extra)}")
            return self
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
    def kind(self) -> Kind:
        """Which body runs this pipeline: a sweep, a fusion, or one training run."""
        if self.predict is not None:
            return "scoring"
        if self.sweep is not None:
            return "sweep"
        if self.fusion is not None:
            return "fusion"
        return "training"

    @property
    def modality(self) -> Optional[str]:
        """What a training pipeline (or sweep) learns from: `tabular` or `text`, as its data source says; None for
        a fusion, whose members decide (`ResolvedPipeline.modality`)."""
        return self.data.modality if self.data is not None else None

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retries and timeouts its steps run under."""
        return RetryPolicy(retries=self.retries, retry_delay_seconds=self.retry_delay_seconds, timeout=self.timeout,
                           steps=self.steps)

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    def preflight(self, base_dir: Path) -> list[Issue]:
        """Checks beyond the schema: the steps fit the data, and the file system (files, columns, callables)."""
        issues = self.fit_issues()
        for key in ("data", "model", "train", "predict"):
            section = getattr(self, key)
            check = getattr(section, "preflight", None)
            if check:
                issues += [((key,) + path, message) for path, message in check(base_dir)]
        missing = self.runner.missing_packages()
        if missing:
            issues.append((("runner", "type"), missing))
        return issues + ui_issues(self)

    def fit_issues(self) -> list[Issue]:
        """Every preprocess step, the model and the training backend must take the data's modality; a text
        pipeline tokenizes once."""
        modality = self.modality
        if modality is None:
            return []
        issues: list[Issue] = []
        why = "the data names a text column" if modality == "text" else "the data has no `text_column`"
        for i, step in enumerate(self.preprocess):
            if modality not in step.modalities:
                issues.append((("preprocess", i), f"preprocess step '{step.name}' does not apply to {modality} data "
                               f"({why}); {modality} pipelines take: {_fitting(PREPROCESSORS, modality)}"))
        if modality == "text":  # the text body runs one `tokenize` and nothing else
            steps = [i for i, step in enumerate(self.preprocess) if modality in step.modalities]
            others = [i for i in steps if self.preprocess[i].name != "tokenize"]
            if others:
                issues.append((("preprocess", others[0]), f"text pipelines run one `tokenize` step; "
                               f"'{self.preprocess[others[0]].name}' cannot run on text here"))
            elif len(steps) > 1:
                issues.append((("preprocess", steps[1]), "give one `tokenize` step (a text pipeline tokenizes once)"))
        if modality not in self.model.modalities:
            issues.append((("model", "type"), f"model type '{self.model.type}' does not take {modality} data "
                           f"({why}); use type: {_fitting(MODELS, modality)}"))
        if modality not in self.train.modalities:
            issues.append((("train", "backend"), f"training backend '{self.train.backend}' does not train on "
                           f"{modality} data ({why}); use backend: {_fitting(TRAINERS, modality)}"))
        return issues + self.task_issues()

    def task_issues(self) -> list[Issue]:
        """The loss and the monitored metric must fit the task, where the data says it before loading (`task:`, or
        a bundled dataset): `cross_entropy` on a regression target, `val_accuracy` watched on one."""
        from tasks.evaluate.names import epoch_metric_names

        task = self.data.task if self.data.task != "auto" else self.data.inferred_task()
        if task == "auto":
            return []
        issues: list[Issue] = []
        loss = getattr(self.train, "loss", None)
        if loss and loss in LOSSES and task not in LOSSES.get(loss).info.get("tasks", (task,)):
            fitting = [name for name in LOSSES.names() if task in LOSSES.get(name).info.get("tasks", ())]
            issues.append((("train", "loss"), f"loss '{loss}' does not fit a {task} target; use one of: "
                                              f"{', '.join(fitting)}"))
        stopping = getattr(self.train, "early_stopping", None)
        if stopping is not None and stopping.monitor not in epoch_metric_names(task):
            issues.append((("train", "early_stopping", "monitor"), f"'{stopping.monitor}' is not logged by a {task} "
                           f"pipeline; monitor one of: {', '.join(epoch_metric_names(task))}"))
        return issues


def _fitting(registry: Any, modality: str) -> str:
    """The registered names whose class takes `modality`, as ` | `-separated text."""
    return " | ".join(name for name in registry.names() if modality in registry.get(name).modalities)
