"""Metric functions: each module registers its metrics in `tasks.registry.METRICS` (name, task, direction)."""
