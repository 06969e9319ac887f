"""The ML side of fuseflow: one module per step kind, each with its config schema beside its Prefect tasks.

Heavy libraries (torch, transformers, mlflow) are imported inside functions, so that importing a config
module stays cheap (`fuseflow validate` imports every config class).
"""
