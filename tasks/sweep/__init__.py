"""Hyperparameter sweeps: the `sweep:` section (grid or random search), its trials, and the trials report."""
