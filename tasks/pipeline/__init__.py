"""The validated shape of a pipeline: the spec, its runner and schedules."""
