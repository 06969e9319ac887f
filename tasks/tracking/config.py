"""The `tracking:` section: where a pipeline's runs are recorded, and which registered model they feed."""
from __future__ import annotations

import warnings
from typing import Optional
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from tasks.registry import StrictModel
from tasks.tracking.promotion import PromoteConfig, check_model_name

#: the tracking URI schemes MLflow understands (a database URL may name its driver: postgresql+psycopg://)
TRACKING_SCHEMES = ("file", "sqlite", "postgresql", "postgres", "mysql", "mssql", "http", "https", "databricks",
                    "databricks-uc", "uc")

with warnings.catch_warnings():
    # `register` is the YAML key users write; pydantic warns that it shadows ABCMeta.register, unused on configs
    warnings.filterwarnings("ignore", message='Field name "register" in "TrackingConfig" shadows', category=UserWarning)

    class TrackingConfig(StrictModel):
        """Where the run is recorded. `uri` default: sqlite:///mlruns/mlflow.db (MLFLOW_TRACKING_URI wins)."""

        experiment: Optional[str] = Field(None, description="MLflow experiment (default: the pipeline's name)")
        uri: Optional[str] = None
        run_name: Optional[str] = None
        register: Optional[str] = Field(None, description="register each run's model under this registered model name")
        promote: Optional[PromoteConfig] = Field(None, description="move an alias to the new version when it is better")

        _name = field_validator("register")(classmethod(lambda cls, v: check_model_name(v)))

        @field_validator("uri")
        @classmethod
        def _known_scheme(cls, value: Optional[str]) -> Optional[str]:
            scheme = urlsplit(value).scheme.split("+")[0] if value and "://" in value else None
            if scheme is not None and scheme not in TRACKING_SCHEMES:
                raise ValueError(f"unknown tracking URI scheme '{scheme}://' (MLflow takes "
                                 f"{', '.join(s + '://' for s in TRACKING_SCHEMES)}, or a local folder path)")
            return value

        @model_validator(mode="after")
        def _promote_needs_register(self) -> "TrackingConfig":
            if self.promote is not None and not self.register:
                raise ValueError("`promote` moves an alias of a registered model: set `register: NAME` too")
            return self
