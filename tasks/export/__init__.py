"""Logged models: the torch (tabular) model and the transformers (text) model."""
