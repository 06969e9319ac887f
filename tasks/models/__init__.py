"""Model types: each module registers one config class in `tasks.registry.MODELS` and builds an nn.Module."""
from tasks.registry import import_submodules

import_submodules(__name__)
