"""The org connection mapped once: the proto's OrgConnection, discovery's Connection and the client's
Credentials agree field by field, and the auth flows by name."""

from __future__ import annotations

import pytest
from sfvault.discovery.v1 import discovery_pb2 as api

from services import sfclient, sfconnection
from services.discovery import domain as d
from services.discovery import translate


def full_connection() -> api.OrgConnection:
    return api.OrgConnection(
        login_url="https://login.example.com",
        auth_flow=api.AUTH_FLOW_JWT_BEARER,
        client_id="cid",
        client_secret_ref="env:SECRET",
        username="u@example.com",
        password_ref="env:PASSWORD",
        refresh_token_ref="env:REFRESH",
        private_key_ref="file:/keys/k.pem",
        ca_bundle_ref="file:/ca.pem",
        api_version="61.0",
    )


def test_every_field_and_flow_maps_alike_through_each_representation() -> None:
    pb = full_connection()
    domain = translate.connection_from_pb(pb)
    assert domain.auth_flow is d.AuthFlow.JWT_BEARER
    assert translate.connection_to_pb(domain) == pb
    from_pb, from_domain = sfclient.credentials_from_connection(pb), sfclient.credentials_from_connection(domain)
    assert from_pb == from_domain
    assert from_pb.auth_flow == "jwt_bearer" and from_pb.private_key_ref == "file:/keys/k.pem"
    assert set(sfconnection.CONNECTION_FIELDS) | {"auth_flow"} == {f.name for f in api.OrgConnection.DESCRIPTOR.fields}


def test_flows_by_name_and_unknown_ones() -> None:
    for name in sfconnection.AUTH_FLOWS:
        assert sfconnection.auth_flow_from_pb(sfconnection.auth_flow_to_pb(name)) == name
        assert d.AuthFlow(name).value == name
    assert sfconnection.auth_flow_from_pb(api.AUTH_FLOW_UNSPECIFIED) is None
    assert sfconnection.auth_flow_from_pb(99) is None
    with pytest.raises(ValueError, match="unknown auth flow"):
        sfconnection.auth_flow_to_pb("saml")
    with pytest.raises(sfclient.AuthenticationRefused):
        sfclient.credentials_from_connection(api.OrgConnection(login_url="https://x"))
    unspecified = api.OrgConnection(login_url="https://x")
    with pytest.raises(d.InvalidPolicy):
        translate.connection_from_pb(unspecified)


def test_a_missing_api_version_is_the_client_s_default() -> None:
    pb = full_connection()
    pb.api_version = ""
    assert sfclient.credentials_from_connection(pb).api_version == sfclient.DEFAULT_API_VERSION
