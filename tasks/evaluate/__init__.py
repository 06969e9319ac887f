"""Evaluation: the `evaluate:` section, metrics and their direction, reports and plots."""
