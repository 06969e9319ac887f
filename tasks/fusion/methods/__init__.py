"""Fusion methods: each module registers its config class in `tasks.registry.FUSION_METHODS`."""
