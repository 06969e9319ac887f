"""The ML side of fuseflow: one subpackage per capability (data, models, train, evaluate, fusion, sweep, ...), each
owning its config classes beside its implementation; the Prefect tasks are in `tasks.steps`, the step cache in
`tasks.cache`. Heavy libraries (torch, transformers, mlflow) are imported inside functions, so that importing a
config module stays cheap (`fuseflow validate` imports every config class). `tasks` never imports `flows`.
"""
