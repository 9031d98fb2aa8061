"""Service settings from environment variables only; a missing or invalid one stops start-up with a message
naming the variable."""

from __future__ import annotations

import sys
from typing import Any, TypeVar

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
    # the HMAC key tokens are signed with (or "file:/path"); required unless auth is explicitly disabled
    auth_key: str = ""
    auth_disabled: bool = False
    auth_revoked: str = ""  # comma-separated token ids (jti) no longer accepted
    service_token: str = ""  # this service's own token for calls to other services (role "service")

    def auth_interceptors(self, required: dict[str, str]) -> list[Any]:
        """The server interceptors: authentication, unless SFVAULT_AUTH_DISABLED=true."""
        return auth_interceptors(self.auth_key, self.auth_disabled, self.auth_revoked, required)

    def own_token(self, name: str) -> str:
        """The token this service presents to others: SFVAULT_SERVICE_TOKEN, or one minted from the key."""
        from services.common.auth import load_key, mint

        if self.service_token or self.auth_disabled or not self.auth_key:
            return self.service_token
        return mint(load_key(self.auth_key), name, "service", ttl_s=365 * 86400.0)


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


def auth_interceptors(auth_key: str, auth_disabled: bool, auth_revoked: str, required: dict[str, str]) -> list[Any]:
    """Authentication for a service's gRPC server; refuses to start without a key unless explicitly disabled."""
    from services.common.auth import AuthInterceptor, load_key

    if auth_disabled:
        return []
    if not auth_key:
        sys.exit(
            "configuration error: SFVAULT_AUTH_KEY: missing required environment variable "
            "(set SFVAULT_AUTH_DISABLED=true only on a closed development network)"
        )
    revoked = frozenset(t for t in auth_revoked.split(",") if t)
    return [AuthInterceptor(load_key(auth_key), required, revoked=revoked)]
