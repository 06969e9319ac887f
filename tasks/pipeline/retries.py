"""Retries and timeouts of a pipeline's steps from YAML (`retries`, `retry_delay_seconds`, `timeout` at the
pipeline level, `steps: {train: {...}}` per step), mapped onto Prefect's task options while the pipeline runs.

The options of the running pipeline sit in a context variable (`step_options`), so every step task picks up its
own when it is called, however the flow body reaches it (directly, through the step cache, or submitted)."""
from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Any, Iterator, Literal, Optional, Union

from pydantic import Field, field_validator

from tasks.registry import StrictModel

#: every Prefect task a pipeline runs (the names of `@task(name=...)` in tasks/steps and tasks/)
STEP_NAMES = ("load-data", "log-dataset", "preprocess", "tokenize", "load-tokenizer", "build-model", "train",
              "evaluate", "log-model", "reuse-run", "load-member", "fuse", "train-nested", "resolve-model",
              "load-profile", "score")
StepName = Literal["load-data", "log-dataset", "preprocess", "tokenize", "load-tokenizer", "build-model", "train",
                   "evaluate", "log-model", "reuse-run", "load-member", "fuse", "train-nested", "resolve-model",
                   "load-profile", "score"]

#: retries beyond this are a typo, not a policy
MAX_RETRIES = 20


def _duration(value: Union[float, str, None]) -> Optional[float]:
    """Seconds, or '90s', '30m', '2h', '1d' -> seconds (positive); None stays None."""
    from tasks.pipeline.schedule import parse_duration

    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expected seconds or a duration such as '30m', '2h', not a boolean")
    return parse_duration(value, "timeout")


class StepOptions(StrictModel):
    """`steps: {train: {retries: 2, retry_delay_seconds: 30, timeout: 2h}}`: what one step overrides."""

    retries: Optional[int] = Field(None, ge=0, le=MAX_RETRIES, description="tries after the first that failed")
    retry_delay_seconds: Optional[float] = Field(None, ge=0, le=86400, description="wait before the first retry; "
                                                 "doubled before each later one (exponential backoff)")
    timeout: Optional[Union[float, str]] = Field(None, description="seconds or a duration ('30m', '2h') one try "
                                                 "of the step may take; a try past it fails (and may be retried)")

    _timeout = field_validator("timeout")(classmethod(lambda cls, v: _duration(v)))


class RetryPolicy(StrictModel):
    """The pipeline-level defaults (`retries`, `retry_delay_seconds`, `timeout`) and the per-step overrides."""

    retries: int = Field(0, ge=0, le=MAX_RETRIES)
    retry_delay_seconds: float = Field(10.0, ge=0, le=86400)
    timeout: Optional[float] = None
    steps: dict[StepName, StepOptions] = Field(default_factory=dict)

    def for_step(self, name: str) -> dict[str, Any]:
        """Prefect task options for step `name`: retries, retry delays (exponential backoff), timeout_seconds."""
        own = self.steps.get(name)  # type: ignore[call-overload]
        retries = own.retries if own is not None and own.retries is not None else self.retries
        delay = own.retry_delay_seconds if own is not None and own.retry_delay_seconds is not None \
            else self.retry_delay_seconds
        timeout = own.timeout if own is not None and own.timeout is not None else self.timeout
        options: dict[str, Any] = {}
        if retries:
            options["retries"] = retries
            options["retry_delay_seconds"] = [delay * 2 ** attempt for attempt in range(retries)]
        if timeout:
            options["timeout_seconds"] = timeout
        return options

    def describe(self) -> str:
        """One line for the run's log: what retries and timeouts apply."""
        parts = []
        if self.retries or self.timeout:
            parts.append(f"every step: {self.retries} retr{'y' if self.retries == 1 else 'ies'}"
                         + (f", timeout {self.timeout:g} s" if self.timeout else ""))
        parts += [f"{name}: {_short(self.for_step(name))}" for name in self.steps]
        return "; ".join(parts)


def _short(options: dict[str, Any]) -> str:
    said = [f"{options.get('retries', 0)} retries"]
    if options.get("retry_delay_seconds"):
        said.append("delays " + "/".join(f"{d:g}" for d in options["retry_delay_seconds"]) + " s")
    if options.get("timeout_seconds"):
        said.append(f"timeout {options['timeout_seconds']:g} s")
    return ", ".join(said)


_CURRENT: contextvars.ContextVar[Optional[RetryPolicy]] = contextvars.ContextVar("fuseflow_retry_policy",
                                                                                 default=None)


@contextmanager
def retry_policy(policy: Optional[RetryPolicy]) -> Iterator[None]:
    """Make `policy` the one every step called in this context (and threads copying it) runs under."""
    token = _CURRENT.set(policy)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def step_options(name: str) -> dict[str, Any]:
    """The Prefect task options of step `name` under the current pipeline's policy (empty outside a run)."""
    policy = _CURRENT.get()
    return policy.for_step(name) if policy is not None else {}


def with_step_options(task: Any) -> Any:
    """`task` with the current pipeline's retries and timeout for its name (itself when none apply)."""
    options = step_options(task.name)
    return task.with_options(**options) if options else task


class StepTimeout(TimeoutError):
    """A step ran past its `timeout` (every try, when retried): said with the step and the key to change."""


def explain_timeout(name: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """`call(*args, **kwargs)`; Prefect's "Scope timed out" becomes a StepTimeout naming step `name` and its key."""
    try:
        return call(*args, **kwargs)
    except StepTimeout:
        raise
    except TimeoutError:  # Prefect's TaskRunTimeoutError is one; only a step with a timeout is explained
        options = step_options(name)
        limit = options.get("timeout_seconds")
        if not limit:
            raise
        tries = 1 + options.get("retries", 0)
        raise StepTimeout(
            f"step '{name}' ran past its timeout of {limit:g} s" + (f" in each of {tries} tries" if tries > 1 else "")
            + f"; raise `steps.{name}.timeout` (or the pipeline's `timeout`) in pipelines.yaml") from None
