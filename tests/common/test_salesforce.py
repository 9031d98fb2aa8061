"""The shared Salesforce connection against sforg: each login flow, re-authentication, retries, limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from services.common import salesforce as sfc
from sforg.testing import Admin, running_org


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_org(tmp_path_factory.mktemp("sforg-common"), scale=300, seed=5) as info:
        yield info


@pytest.fixture
def admin(org: dict[str, Any]) -> Iterator[Admin]:
    a = Admin(org)
    yield a
    a.clear_faults()
    a.api_usage(used=0)


@pytest.fixture
def creds(org: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> sfc.Credentials:
    monkeypatch.setenv("T_SF_SECRET", org["client_secret"])
    monkeypatch.setenv("T_SF_PASSWORD", org["password"] + org.get("security_token", ""))
    # a hostile REQUESTS_CA_BUNDLE must not override the org's CA (requests would let it)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    return sfc.Credentials(
        login_url=org["login_url"],
        auth_flow="client_credentials",
        client_id=org["client_id"],
        client_secret_ref="env:T_SF_SECRET",
        ca_bundle_ref=f"file:{org['ca_file']}",
        api_version=org["api_version"],
    )


def test_client_credentials_login_and_query(creds: sfc.Credentials, org: dict[str, Any]) -> None:
    client = sfc.OrgClient(creds)
    assert client.salesforce_org_id.startswith("00D")
    result = client.call(lambda sf: sf.query("SELECT Id FROM Account LIMIT 5"))
    assert len(result["records"]) == 5
    assert client.api_calls == 1
    assert client.org_usage is not None and client.org_usage[1] > 0
    assert org["client_secret"] not in repr(client.token)


def test_password_login(creds: sfc.Credentials, org: dict[str, Any]) -> None:
    pw = sfc.Credentials(
        **{**creds.__dict__, "auth_flow": "password", "username": org["username"], "password_ref": "env:T_SF_PASSWORD"}
    )
    assert sfc.obtain_token(pw).salesforce_org_id.startswith("00D")


def test_refused_login_names_no_secret(creds: sfc.Credentials, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SF_SECRET", "wrong-secret-value")
    with pytest.raises(sfc.AuthenticationRefused) as refused:
        sfc.OrgClient(creds)
    assert "wrong-secret-value" not in str(refused.value)


def test_missing_secret_names_the_reference(creds: sfc.Credentials, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T_SF_SECRET")
    with pytest.raises(sfc.SecretError, match="T_SF_SECRET"):
        sfc.OrgClient(creds)


def test_reauthenticates_after_token_revocation(creds: sfc.Credentials, admin: Admin) -> None:
    client = sfc.OrgClient(creds)
    first = client.token.access_token
    admin.revoke_tokens()
    result = client.call(lambda sf: sf.query("SELECT Id FROM Contact LIMIT 1"))
    assert result["records"]
    assert client.token.access_token != first


def test_retries_transient_errors(creds: sfc.Credentials, admin: Admin) -> None:
    client = sfc.OrgClient(creds)
    admin.fault(endpoint="query", error_rate=1.0, error="SERVER_UNAVAILABLE", count=2)
    result = client.call(lambda sf: sf.query("SELECT Id FROM Account LIMIT 1"))
    assert result["records"]
    assert client.api_calls == 3  # two 503s, then the answer


def test_request_limit_exceeded_stops(creds: sfc.Credentials, admin: Admin) -> None:
    client = sfc.OrgClient(creds)
    info = admin.info()
    admin.api_usage(used=int(info.get("api_max", 100000)) + 1)
    with pytest.raises(sfc.ApiLimitExceeded):
        client.call(lambda sf: sf.query("SELECT Id FROM Account LIMIT 1"))


def test_own_budget_stops_before_calling(creds: sfc.Credentials) -> None:
    client = sfc.OrgClient(creds, api_call_cap=2)
    client.call(lambda sf: sf.query("SELECT Id FROM Account LIMIT 1"))
    client.call(lambda sf: sf.query("SELECT Id FROM Account LIMIT 1"))
    with pytest.raises(sfc.ApiLimitExceeded, match="budget"):
        client.call(lambda sf: sf.query("SELECT Id FROM Account LIMIT 1"))
    assert client.api_calls == 2


def test_secret_reference_shapes() -> None:
    sfc.check_secret_ref("env:X", "client secret")
    sfc.check_secret_ref("file:/run/secrets/x", "client secret")
    for bad in ["X", "env:", "file:relative", "vault:x"]:
        with pytest.raises(sfc.SecretError):
            sfc.check_secret_ref(bad, "client secret")
