"""The orchestration side of fuseflow: spec loading and validation, Prefect flows, deployments, the CLI."""
