"""MLflow tracking: the run logger, tag names, registration and promotion."""
