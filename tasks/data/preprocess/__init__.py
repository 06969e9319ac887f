"""Preprocess steps: each module registers its config class in `tasks.registry.PREPROCESSORS`."""
