"""Losses of the torch backend: each module registers its losses in `tasks.registry.LOSSES` (`train.loss:`)."""
