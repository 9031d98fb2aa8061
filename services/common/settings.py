"""Service settings from environment variables only; a missing or invalid one stops start-up with a message
naming the variable."""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SFVAULT_", extra="ignore")

    database_url: str
    nats_url: str
    bus_namespace: str = ""
    events_replicas: int = 1
    jobs_replicas: int = 1
    duplicate_window_s: float = 7200.0
    log_level: str = "INFO"


def load(cls: type[S]) -> S:
    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        problems = []
        for err in exc.errors():
            name = f"{prefix}{err['loc'][0]}".upper() if err["loc"] else "?"
            problems.append(
                f"{name}: {'missing required environment variable' if err['type'] == 'missing' else err['msg']}"
            )
        sys.exit("configuration error: " + "; ".join(problems))
