"""Scoring pipelines: a logged model applied to new rows in batches, with the output written whole or not at all."""
