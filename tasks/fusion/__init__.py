"""Model fusion: combine several trained models (output level or weight level) into one MLflow model."""
