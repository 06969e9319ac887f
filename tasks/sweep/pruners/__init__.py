"""Sweep pruners (`sweep.pruner`): one file each, registered in `tasks.registry.PRUNERS`. A pruner reads each
trial's monitored metric per epoch and stops a hopeless trial at once."""
