"""Model types: each module registers one config class in `tasks.registry.MODELS` and builds an nn.Module."""
