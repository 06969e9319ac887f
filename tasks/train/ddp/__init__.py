"""Distributed data-parallel training under torchrun: the launcher and one worker per backend."""
