"""Model fusion: combine several trained models (output level or weight level) into one MLflow model."""
from tasks.registry import import_submodules

import_submodules(__name__)
