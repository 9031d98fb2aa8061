"""An org connection (where and how to log in; secrets only as references): the one Connection type, which
discovery's domain keeps and the Salesforce client's Credentials (services/sfclient.py) extends, mapped once to
and from sfvault.discovery.v1.OrgConnection and the CLI's options. Light on purpose: the CLI imports it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sfvault.discovery.v1 import discovery_pb2


class AuthFlow(StrEnum):
    CLIENT_CREDENTIALS = "client_credentials"
    PASSWORD = "password"
    REFRESH_TOKEN = "refresh_token"
    JWT_BEARER = "jwt_bearer"


@dataclass(frozen=True)
class Connection:
    """How to log in to an org; secrets only as references ("env:NAME" / "file:/path")."""

    login_url: str
    auth_flow: AuthFlow
    client_id: str = ""
    client_secret_ref: str = ""
    username: str = ""
    password_ref: str = ""
    refresh_token_ref: str = ""
    private_key_ref: str = ""
    ca_bundle_ref: str = ""
    api_version: str = ""

    def secret_refs(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in CONNECTION_FIELDS if name.endswith("_ref")}


# the fields every representation names alike; only auth_flow's values differ (AUTH_FLOW_<NAME> in the proto)
CONNECTION_FIELDS = tuple(f.name for f in dataclasses.fields(Connection) if f.name != "auth_flow")
AUTH_FLOWS = tuple(flow.value for flow in AuthFlow)


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
