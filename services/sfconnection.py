"""An org connection (where and how to log in; secrets only as references), mapped once between its
representations: sfvault.discovery.v1.OrgConnection, discovery's domain Connection, the Salesforce client's
Credentials (services/sfclient.py) and the CLI's options. Light on purpose: the CLI imports it."""

from __future__ import annotations

from typing import Any

from sfvault.discovery.v1 import discovery_pb2

# the fields every representation names alike; only auth_flow's values differ (AUTH_FLOW_<NAME> in the proto)
CONNECTION_FIELDS = (
    "login_url",
    "client_id",
    "client_secret_ref",
    "username",
    "password_ref",
    "refresh_token_ref",
    "private_key_ref",
    "ca_bundle_ref",
    "api_version",
)
AUTH_FLOWS = ("client_credentials", "password", "refresh_token", "jwt_bearer")


def auth_flow_to_pb(name: str) -> int:
    """The sfvault.discovery.v1.AuthFlow value of a flow's name (ValueError for an unknown one)."""
    if name not in AUTH_FLOWS:
        raise ValueError(f"unknown auth flow {name!r}: one of {', '.join(AUTH_FLOWS)}")
    return int(discovery_pb2.AuthFlow.Value(f"AUTH_FLOW_{name.upper()}"))


def auth_flow_from_pb(value: int) -> str | None:
    """The name of a sfvault.discovery.v1.AuthFlow value; None for AUTH_FLOW_UNSPECIFIED or an unknown one."""
    try:
        name = discovery_pb2.AuthFlow.Name(discovery_pb2.AuthFlow.ValueType(value)).removeprefix("AUTH_FLOW_").lower()
    except ValueError:
        return None
    return name if name in AUTH_FLOWS else None


def connection_fields(c: Any) -> dict[str, str]:
    """The fields of any representation of an org connection but auth_flow, by name."""
    return {name: getattr(c, name) for name in CONNECTION_FIELDS}
