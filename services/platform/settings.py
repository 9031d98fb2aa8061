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
    # this service's NATS user and password (or "file:/path" of a mounted Secret); empty: no authentication
    nats_user: str = ""
    nats_password: str = ""
    nats_tls_ca_file: str = ""  # NATS over TLS: the CA its certificate chains to (PEM)
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
    # gRPC over TLS: the server's certificate and key, and the CA its clients trust (files, PEM)
    health_check_interval_s: float = 5.0  # how often dependencies are checked for grpc.health.v1
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""

    def bus_config(self) -> Any:
        """The bus as these settings describe it (services.platform.bus.BusConfig)."""
        from services.platform.bus import BusConfig

        # the streams' settings are named alike; the connection's carry a nats_ prefix here (tls_ca_file is gRPC's)
        streams = {name: getattr(self, name) for name in ("events_replicas", "jobs_replicas", "duplicate_window_s")}
        return BusConfig(
            url=self.nats_url,
            namespace=self.bus_namespace,
            user=self.nats_user,
            password=self._nats_password(),
            tls_ca_file=self.nats_tls_ca_file,
            **streams,
        )

    def _nats_password(self) -> str:
        password = read_secret_value("SFVAULT_NATS_PASSWORD", self.nats_password)
        if self.nats_user and not password:
            sys.exit("configuration error: SFVAULT_NATS_PASSWORD: missing (SFVAULT_NATS_USER is set)")
        return password

    def server_credentials(self) -> Any:
        return server_credentials(self.tls_cert_file, self.tls_key_file)

    def channel_credentials(self) -> Any:
        return channel_credentials(self.tls_ca_file)

    def auth_interceptors(self, required: dict[str, str]) -> list[Any]:
        """The server interceptors: authentication, unless SFVAULT_AUTH_DISABLED=true."""
        return auth_interceptors(self.auth_key, self.auth_disabled, self.auth_revoked, required)

    def own_token(self, name: str) -> str:
        """The token this service presents to others: SFVAULT_SERVICE_TOKEN, or one minted from the key."""
        from services.platform.auth import load_key, mint

        if self.service_token or self.auth_disabled or not self.auth_key:
            return self.service_token
        return mint(load_key(self.auth_key), name, "service", ttl_s=365 * 86400.0)


def read_secret_value(name: str, value: str) -> str:
    """A setting given as its value or as "file:/path" of a mounted Secret; a missing file stops start-up
    with a message naming the variable (never the value)."""
    if not value.startswith("file:"):
        return value
    try:
        with open(value[5:], encoding="utf-8") as f:
            return f.read().strip()
    except OSError as exc:
        sys.exit(f"configuration error: {name}: cannot read {value[5:]} ({exc.strerror})")


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
    from services.platform.auth import AuthInterceptor, load_key

    if auth_disabled:
        return []
    if not auth_key:
        sys.exit(
            "configuration error: SFVAULT_AUTH_KEY: missing required environment variable "
            "(set SFVAULT_AUTH_DISABLED=true only on a closed development network)"
        )
    revoked = frozenset(t for t in auth_revoked.split(",") if t)
    return [AuthInterceptor(load_key(auth_key), required, revoked=revoked)]


def server_credentials(cert_file: str, key_file: str) -> Any:
    """TLS for a gRPC server when SFVAULT_TLS_CERT_FILE and SFVAULT_TLS_KEY_FILE are set, else None."""
    import grpc

    if not cert_file and not key_file:
        return None
    if not (cert_file and key_file):
        sys.exit("configuration error: SFVAULT_TLS_CERT_FILE and SFVAULT_TLS_KEY_FILE go together")
    with open(key_file, "rb") as k, open(cert_file, "rb") as c:
        return grpc.ssl_server_credentials([(k.read(), c.read())])


def channel_credentials(ca_file: str) -> Any:
    """TLS for a gRPC client when SFVAULT_TLS_CA_FILE is set (the CA the servers' certificates chain to)."""
    import grpc

    if not ca_file:
        return None
    with open(ca_file, "rb") as f:
        return grpc.ssl_channel_credentials(root_certificates=f.read())
