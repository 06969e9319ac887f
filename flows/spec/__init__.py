"""Loading pipelines.yaml: YAML with lines, `defaults:` and `--set` overrides, validation, located errors."""
