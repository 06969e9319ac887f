"""Feature types: one module each, registered in `FEATURE_TYPES` by their `type` value."""
