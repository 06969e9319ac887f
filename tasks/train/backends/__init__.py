"""Training backends: each module registers its config class in `tasks.registry.TRAINERS`."""
