"""The Prefect tasks of the pipelines: thin `@task` wrappers over the step modules, testable via `.fn`."""
