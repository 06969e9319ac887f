"""Sweep samplers (`sweep.sampler`): one file each, registered in `tasks.registry.SAMPLERS`."""
