"""`@step(...)`: a Prefect task that runs under the current pipeline's retries and timeout (`retries`,
`retry_delay_seconds`, `timeout`, `steps:` in pipelines.yaml; tasks/pipeline/retries.py), however it is called."""
from __future__ import annotations

from typing import Any, Callable

from prefect import Task

from tasks.pipeline.retries import explain_timeout, with_step_options


class StepTask(Task):
    """A task whose calls and submissions take the options the running pipeline gives its name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        configured = with_step_options(self)  # a plain Task with the options, or self when none apply
        if configured is self:
            return super().__call__(*args, **kwargs)
        return explain_timeout(self.name, configured, *args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        configured = with_step_options(self)
        if configured is self:
            return super().submit(*args, **kwargs)
        return configured.submit(*args, **kwargs)


def step(**task_options: Any) -> Callable[[Callable[..., Any]], StepTask]:
    """Like `prefect.task(**task_options)`, for a pipeline step."""
    def decorate(fn: Callable[..., Any]) -> StepTask:
        return StepTask(fn=fn, **task_options)
    return decorate
