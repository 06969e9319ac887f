"""Data: sources (tables, text), splits, preprocess steps and tokenization."""
