"""Data sources: each module registers its config classes in `tasks.registry.DATA_SOURCES` (key `source:`)."""
