"""Pipeline bodies: what runs inside a pipeline's open MLflow run, one per pipeline kind."""
