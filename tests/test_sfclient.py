"""The shared Salesforce connection against sforg: each login flow, re-authentication, the one retry rule on every
path, limits, and where an org's secrets may come from."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceGeneralError, SalesforceMalformedRequest

from services import sfclient as sfc
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
    a.concurrency_limit(25, long_running_seconds=20.0)


@pytest.fixture
def creds(org: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> sfc.Credentials:
    monkeypatch.setenv("SFVAULT_SECRET_T_SF", org["client_secret"])
    monkeypatch.setenv("SFVAULT_SECRET_T_SF_PASSWORD", org["password"] + org.get("security_token", ""))
    # a hostile REQUESTS_CA_BUNDLE must not override the org's CA (requests would let it)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    return sfc.Credentials(
        login_url=org["login_url"],
        auth_flow="client_credentials",
        client_id=org["client_id"],
        client_secret_ref="env:SFVAULT_SECRET_T_SF",
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


def test_clients_share_the_kept_alive_connections(
    creds: sfc.Credentials, org: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's client logs in and calls over the connection the client before it used: no TLS handshake each."""
    opened: list[str] = []
    connect = urllib3.connection.HTTPSConnection.connect

    def counted(self: urllib3.connection.HTTPSConnection) -> None:
        opened.append(self.host)
        connect(self)

    monkeypatch.setattr(urllib3.connection.HTTPSConnection, "connect", counted)
    for _ in range(4):  # one after the other, as a jobrunner's jobs
        client = sfc.OrgClient(creds)
        client.call(lambda sf: sf.query("SELECT Id FROM Account LIMIT 1"))
        assert client.api_calls == 1  # each client still counts its own calls
    assert len(opened) <= 1


def test_password_login(creds: sfc.Credentials, org: dict[str, Any]) -> None:
    pw = sfc.Credentials(
        **{
            **creds.__dict__,
            "auth_flow": "password",
            "username": org["username"],
            "password_ref": "env:SFVAULT_SECRET_T_SF_PASSWORD",
        }
    )
    assert sfc.obtain_token(pw).salesforce_org_id.startswith("00D")


def test_refused_login_names_no_secret(creds: sfc.Credentials, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFVAULT_SECRET_T_SF", "wrong-secret-value")
    with pytest.raises(sfc.AuthenticationRefused) as refused:
        sfc.OrgClient(creds)
    assert "wrong-secret-value" not in str(refused.value)


def test_missing_secret_names_the_reference(creds: sfc.Credentials, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFVAULT_SECRET_T_SF")
    with pytest.raises(sfc.SecretError, match="SFVAULT_SECRET_T_SF"):
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


def test_the_concurrent_long_requests_limit_is_waited_out(creds: sfc.Credentials, admin: Admin) -> None:
    """403 REQUEST_LIMIT_EXCEEDED "ConcurrentPerOrgLongTxn" passes when the long requests end: retried, not taken
    for the daily limit (which stops a job until the next session)."""
    client = sfc.OrgClient(creds)
    path = f"/services/data/v{creds.api_version}/limits/recordCount?sObjects=Account"
    admin.fault(endpoint="limits", latency=1.5, count=1)
    admin.concurrency_limit(1, long_running_seconds=0.0)
    with ThreadPoolExecutor(1) as pool:
        long_one = pool.submit(client.request, "GET", path)  # running while the others are refused
        while not admin.call("in_flight_requests")["in_flight"]:
            assert not long_one.done()
            time.sleep(0.01)  # the emulator's state: no event to await
        result = client.call(lambda sf: sf.query("SELECT Id FROM Account LIMIT 1"))
        assert result["records"]
        assert long_one.result().status_code == 200
    assert client.api_calls > 2  # the query was refused at least once, then retried


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


def test_query_timeout_is_retried_on_every_rest_path(creds: sfc.Credentials, admin: Admin) -> None:
    """QUERY_TIMEOUT comes with HTTP 400: a retry, not a failure, through simple-salesforce and raw calls alike."""
    client = sfc.OrgClient(creds)
    batch = {"Sforce-Query-Options": "batchSize=200"}
    admin.create("Lead", n=200)  # more than one page
    admin.fault(endpoint="query", error_rate=1.0, error="QUERY_TIMEOUT", count=1)
    first = client.call(lambda sf: sf.query("SELECT Id FROM Lead", headers=batch))
    assert first["records"] and first["nextRecordsUrl"]
    admin.fault(endpoint="query_more", error_rate=1.0, error="QUERY_TIMEOUT", count=1)
    more = client.call(lambda sf: sf.query_more(first["nextRecordsUrl"], identifier_is_url=True, headers=batch))
    assert more["records"]
    base = f"/services/data/v{creds.api_version}"
    admin.fault(endpoint="limits", error_rate=1.0, error="QUERY_TIMEOUT", count=1)  # the record count call
    counts = client.request("GET", f"{base}/limits/recordCount?sObjects=Account")
    assert counts.status_code == 200 and counts.json()["sObjects"]
    admin.fault(endpoint="bulk2_create", error_rate=1.0, error="QUERY_TIMEOUT", count=1)
    job = client.request("POST", f"{base}/jobs/query", json={"operation": "queryAll", "query": "SELECT Id FROM Lead"})
    assert job.status_code == 200 and job.json()["id"]
    assert client.api_calls == 4 + 4  # each call once more


def test_a_timeout_that_keeps_coming_is_raised_as_transient(creds: sfc.Credentials, admin: Admin) -> None:
    client = sfc.OrgClient(creds, max_attempts=2)
    admin.fault(endpoint="limits", error_rate=1.0, error="QUERY_TIMEOUT")
    with pytest.raises(sfc.SalesforceError) as raised:
        client.request("GET", f"/services/data/v{creds.api_version}/limits/recordCount?sObjects=Account")
    assert raised.value.code == "QUERY_TIMEOUT" and sfc.is_transient(raised.value)
    assert client.api_calls == 2


def test_a_soap_fault_is_judged_by_its_code(creds: sfc.Credentials, admin: Admin) -> None:
    """`org test` asks the Metadata API through OrgClient.request: a permission fault (HTTP 500, as every SOAP
    fault) is returned at once to say what is missing (it was retried six times, then 'not reachable')."""
    client = sfc.OrgClient(creds)
    envelope = (
        '<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
        'envelope/" xmlns:met="http://soap.sforce.com/2006/04/metadata"><soapenv:Header><met:SessionHeader>'
        f"<met:sessionId>{client.token.access_token}</met:sessionId></met:SessionHeader></soapenv:Header>"
        f"<soapenv:Body><met:describeMetadata><met:asOfVersion>{creds.api_version}</met:asOfVersion>"
        "</met:describeMetadata></soapenv:Body></soapenv:Envelope>"
    )
    path = f"/services/Soap/m/{creds.api_version}"
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    admin.fault(endpoint="metadata", error_rate=1.0, error="INSUFFICIENT_ACCESS", count=1)
    refused = client.request("POST", path, data=envelope.encode(), headers=headers)
    assert refused.status_code == 500 and b"INSUFFICIENT_ACCESS" in refused.content and client.api_calls == 1
    admin.fault(endpoint="metadata", error_rate=1.0, error="SERVER_UNAVAILABLE", count=1)
    answered = client.request("POST", path, data=envelope.encode(), headers=headers)
    assert answered.status_code == 200 and client.api_calls == 3  # the transient fault was retried


def test_a_refusal_is_returned_at_once(creds: sfc.Credentials, admin: Admin) -> None:
    client = sfc.OrgClient(creds)
    admin.fault(endpoint="bulk2_create", error_rate=1.0, error="FEATURENOTENABLED")
    job = client.request(
        "POST",
        f"/services/data/v{creds.api_version}/jobs/query",
        json={"operation": "query", "query": "SELECT Id FROM Lead"},
    )
    assert job.status_code == 400 and client.api_calls == 1


def _library(cls: type[Exception], status: int, content: Any) -> Exception:
    """simple-salesforce's error as it raises it: `content` is the parsed JSON body (its stubs say bytes)."""
    return cls("https://org/services/data", status, "query", content)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (sfc.SalesforceError(400, "QUERY_TIMEOUT", "too long"), True),
        (sfc.SalesforceError(503, "", "busy"), True),
        (sfc.SalesforceError(500, "UNKNOWN_EXCEPTION", "oops"), True),
        (sfc.SalesforceError(400, "MALFORMED_QUERY", "bad"), False),
        (sfc.SalesforceError(400, "FEATURENOTENABLED", "no Bulk"), False),
        (sfc.SalesforceError(500, "SERVER_UNAVAILABLE", "busy", soap=True), True),
        (sfc.SalesforceError(500, "INVALID_TYPE", "no such type", soap=True), False),
        (sfc.SalesforceError(500, "", "a proxy's page", soap=True), True),
        (_library(SalesforceMalformedRequest, 400, [{"errorCode": "QUERY_TIMEOUT", "message": "m"}]), True),
        (_library(SalesforceMalformedRequest, 400, [{"errorCode": "INVALID_FIELD", "message": "m"}]), False),
        (_library(SalesforceGeneralError, 502, "bad gateway"), True),
        (_library(SalesforceExpiredSession, 401, ""), False),
        (requests.ConnectionError("reset"), True),
        (requests.exceptions.ChunkedEncodingError("cut"), True),
        (ValueError("not Salesforce"), False),
    ],
)
def test_the_one_retry_rule(exc: BaseException, transient: bool) -> None:
    assert sfc.is_transient(exc) is transient


def test_secret_reference_shapes() -> None:
    sfc.check_secret_ref("env:SFVAULT_SECRET_X", "client secret")
    sfc.check_secret_ref("file:/var/run/secrets/sfvault/salesforce/x", "client secret")
    for bad in ["X", "env:", "file:relative", "vault:x"]:
        with pytest.raises(sfc.SecretError):
            sfc.check_secret_ref(bad, "client secret")


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    allowed = tmp_path / "secrets"
    allowed.mkdir()
    monkeypatch.setenv("SFVAULT_SECRETS_DIR", f"{allowed}{os.pathsep}{tmp_path / 'more'}")
    monkeypatch.delenv("SFVAULT_SECRET_ENV_PREFIX", raising=False)
    return allowed


def test_an_orgs_secret_comes_only_from_the_secrets_directories(secrets_dir: Path, tmp_path: Path) -> None:
    (secrets_dir / "sf").write_text("the-client-secret\n")
    assert sfc.read_org_secret(f"file:{secrets_dir / 'sf'}", "client secret") == "the-client-secret"
    key = tmp_path / "auth.key"
    key.write_text("the-signing-key")
    (secrets_dir / "link").symlink_to(key)
    for ref in (
        f"file:{key}",  # outside
        f"file:{secrets_dir}/../auth.key",  # out through ..
        f"file:{secrets_dir / 'link'}",  # out through a symbolic link
        f"file:{secrets_dir}",  # the directory itself
        "file:/etc/passwd",
    ):
        with pytest.raises(sfc.SecretError, match="SFVAULT_SECRETS_DIR") as refused:
            sfc.read_org_secret(ref, "client secret")
        assert "the-signing-key" not in str(refused.value)
        with pytest.raises(sfc.SecretError, match="SFVAULT_SECRETS_DIR"):
            sfc.check_secret_ref(ref, "client secret")
    # the operator's own key (the CLI's `token create`) is read wherever it is
    assert sfc.read_secret(f"file:{key}", "signing key") == "the-signing-key"


def test_an_orgs_secret_comes_only_from_variables_with_the_prefix(
    secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SFVAULT_SECRET_ACME", "acme-secret")
    monkeypatch.setenv("SFVAULT_AUTH_KEY", "the-signing-key")
    monkeypatch.setenv("SFVAULT_DATABASE_URL", "postgresql://u:pw@db/sfvault")
    monkeypatch.setenv("HOME_GROWN", "x")
    assert sfc.read_org_secret("env:SFVAULT_SECRET_ACME", "client secret") == "acme-secret"
    for name in ("SFVAULT_AUTH_KEY", "SFVAULT_DATABASE_URL", "HOME_GROWN", "SFVAULT_SECRET_ENV_PREFIX"):
        with pytest.raises(sfc.SecretError, match="SFVAULT_SECRET_ENV_PREFIX") as refused:
            sfc.read_org_secret(f"env:{name}", "client secret")
        assert "the-signing-key" not in str(refused.value) and "pw@db" not in str(refused.value)
    # another prefix may be configured; sfvault's own settings stay refused whatever it is
    monkeypatch.setenv("SFVAULT_SECRET_ENV_PREFIX", "SFVAULT_")
    with pytest.raises(sfc.SecretError, match="not allowed"):
        sfc.read_org_secret("env:SFVAULT_AUTH_KEY", "client secret")
    monkeypatch.setenv("SFVAULT_SECRET_ENV_PREFIX", "")
    with pytest.raises(sfc.SecretError, match="SFVAULT_SECRET_ENV_PREFIX must"):
        sfc.read_org_secret("env:HOME_GROWN", "client secret")
    assert sfc.read_secret("env:SFVAULT_AUTH_KEY", "signing key") == "the-signing-key"


def test_sfvaults_own_files_and_the_rest_of_run_secrets_are_never_an_orgs_secret(
    secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = secrets_dir / "auth.key"  # even mounted inside a secrets directory
    key.write_text("the-signing-key")
    monkeypatch.setenv("SFVAULT_AUTH_KEY", f"file:{key}")
    with pytest.raises(sfc.SecretError, match="sfvault's own settings") as refused:
        sfc.read_org_secret(f"file:{key}", "client secret")
    assert "the-signing-key" not in str(refused.value)
    monkeypatch.delenv("SFVAULT_SECRETS_DIR")  # the defaults: the Kubernetes mount and .sfvault/secrets
    sfc.check_secret_ref("file:/var/run/secrets/sfvault/salesforce/prod", "client secret")
    for outside in ("/var/run/secrets/kubernetes.io/serviceaccount/token", "/run/secrets/sfvault/auth/key"):
        with pytest.raises(sfc.SecretError, match="SFVAULT_SECRETS_DIR"):
            sfc.check_secret_ref(f"file:{outside}", "client secret")


def test_login_refuses_a_secret_outside_the_rule(
    creds: sfc.Credentials, secrets_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, admin: Admin
) -> None:
    """`org test` and jobs log in through obtain_token: a reference outside the rule is never sent anywhere."""
    monkeypatch.setenv("SFVAULT_AUTH_KEY", "the-signing-key")
    admin.reset_accounting()
    for ref in ("env:SFVAULT_AUTH_KEY", f"file:{tmp_path / 'elsewhere'}"):
        with pytest.raises(sfc.SecretError, match="not allowed"):
            sfc.OrgClient(dataclasses.replace(creds, client_secret_ref=ref))
    assert "oauth" not in admin.accounting()["calls"]
    (secrets_dir / "sf").write_text(os.environ["SFVAULT_SECRET_T_SF"])
    assert sfc.OrgClient(dataclasses.replace(creds, client_secret_ref=f"file:{secrets_dir / 'sf'}")).token
