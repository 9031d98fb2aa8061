"""Connections to a Salesforce org, shared by discovery and jobrunner.

sfvault obtains the OAuth token itself (client credentials, password, refresh token or JWT bearer) and
hands `instance_url` + token to simple-salesforce. `OrgClient.call` re-authenticates once on
`INVALID_SESSION_ID`, retries what `is_transient` says is worth another try (the one retry rule: 5xx,
`QUERY_TIMEOUT`, `SERVER_UNAVAILABLE`, the concurrent long-requests limit, connection errors and stalls) with
bounded back-off, counts the API calls it spends and tracks the org's daily usage from `Sforce-Limit-Info`. An
org's secrets are read from "env:NAME" / "file:/path" references allowed by `services.platform.secrets`, and never
logged, traced or put in an exception message.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError as LibraryError
from simple_salesforce.exceptions import SalesforceExpiredSession
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from urllib3.exceptions import ProtocolError
from urllib3.exceptions import TimeoutError as SocketTimeout

from services.platform import telemetry
from services.platform.secrets import SecretError, check_org_secret_ref, read_org_secret, read_secret
from services.sfconnection import AuthFlow, Connection, auth_flow_from_pb, connection_fields

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_API_VERSION = "62.0"
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")

# Error codes worth another try whatever the HTTP status they come with: a query that ran too long, a server
# that is busy or failed inside. A SOAP fault comes at HTTP 500 whatever it means: it is judged by its code.
TRANSIENT_CODES = frozenset({"QUERY_TIMEOUT", "SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION"})

__all__ = [
    "SecretError",
    "check_org_secret_ref",
    "read_org_secret",
    "read_secret",
]


class SalesforceError(RuntimeError):
    """An error answer of Salesforce (REST, Bulk or a Metadata SOAP fault): its HTTP status, its code (errorCode, or
    a faultcode without its namespace) and message. Whether it is worth another try: `is_transient`."""

    def __init__(self, status: int, code: str, message: str, *, soap: bool = False) -> None:
        super().__init__(f"{code or status}: {message}"[:500])
        self.status, self.code, self.soap = status, code, soap


_FAULT = re.compile(r"<faultcode>(?:[^<:]*:)?([^<]*)</faultcode>.*?(?:<faultstring>([^<]*)</faultstring>)?", re.S)


def soap_fault_of(response: requests.Response) -> tuple[str, str] | None:
    """(faultcode without its namespace, faultstring) of a SOAP fault answer, None for any other answer."""
    if b"<faultcode>" not in response.content:
        return None
    match = _FAULT.search(response.text)
    return (match.group(1), match.group(2) or "") if match else None


def error_of(response: requests.Response) -> tuple[str, str]:
    """(errorCode, message) of a REST or Bulk error answer; ("", the text's start) when it has no JSON code."""
    code, message = "", response.text[:300]
    try:
        body = response.json()
        item = body[0] if isinstance(body, list) and body else body
        if isinstance(item, dict):
            code = str(item.get("errorCode") or item.get("error") or "")
            message = str(item.get("message") or item.get("error_description") or message)
    except ValueError:
        pass
    return code, message


class AuthenticationRefused(RuntimeError):
    """The org refused the login: a critical error for a session."""


class OrgUnreachable(RuntimeError):
    """The org could not be reached after retries: a critical error for a session."""


class ApiLimitExceeded(RuntimeError):
    """REQUEST_LIMIT_EXCEEDED, or sfvault's own API budget is spent: stop cleanly, resume next session."""


def check_secret_ref(ref: str, what: str) -> None:
    """Validate an org's reference without reading it: its shape and the secrets rule (services.platform.secrets)."""
    if ref:
        check_org_secret_ref(ref, what)


@dataclass(frozen=True)
class Credentials(Connection):
    """An org connection as the client logs in with it: without an API version, the client's default."""

    api_version: str = DEFAULT_API_VERSION

    @property
    def verify(self) -> str | bool:
        if not self.ca_bundle_ref:
            return True
        return self.ca_bundle_ref.removeprefix("file:")


def credentials_from_connection(c: Any) -> Credentials:
    """Credentials from an org connection: a sfvault.discovery.v1.OrgConnection (as a JobSpec carries it, its
    auth_flow the proto's enum) or discovery's domain Connection (its auth_flow a name)."""
    flow = str(c.auth_flow) if isinstance(c.auth_flow, str) else auth_flow_from_pb(c.auth_flow)
    if flow is None:
        raise AuthenticationRefused(f"the org connection names no known auth flow ({int(c.auth_flow)})")
    fields = connection_fields(c)
    fields["api_version"] = fields["api_version"] or DEFAULT_API_VERSION
    return Credentials(auth_flow=AuthFlow(flow), **fields)


@dataclass(frozen=True)
class Token:
    access_token: str
    instance_url: str
    salesforce_org_id: str
    user_id: str

    def __repr__(self) -> str:  # never print the token
        return f"Token(instance_url={self.instance_url!r}, org={self.salesforce_org_id!r})"


# One pool of HTTP connections for every org client of the process: a job's login and calls go over the kept-alive
# TLS connections of the jobs before it instead of a handshake each (urllib3's pools are thread-safe; a pool is
# keyed by host and TLS settings, so a connection never serves another CA bundle; requests carry their own token)
_POOL = HTTPAdapter(pool_connections=32, pool_maxsize=32)


def new_http_session(creds: Credentials) -> requests.Session:
    session = requests.Session()  # a span per call (telemetry): path and status only, never the query or a token
    # REQUESTS_CA_BUNDLE would otherwise override session.verify (see shared/salesforce/WIRE.md 1.1)
    session.trust_env = False
    session.verify = creds.verify
    session.mount("https://", _POOL)
    session.mount("http://", _POOL)
    return session


def _jwt(creds: Credentials) -> str:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_private_key(read_org_secret(creds.private_key_ref, "private key").encode(), None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SecretError("private key: must be an RSA key for RS256")

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "RS256"}).encode())
    claims = b64(
        json.dumps(
            {"iss": creds.client_id, "sub": creds.username, "aud": creds.login_url, "exp": int(time.time()) + 180}
        ).encode()
    )
    signature = key.sign(f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{claims}.{b64(signature)}"


def obtain_token(creds: Credentials, session: requests.Session | None = None, timeout: float = 30.0) -> Token:
    """Log in with the org connection's OAuth flow. Raises AuthenticationRefused or OrgUnreachable."""
    http = session or new_http_session(creds)
    url = creds.login_url.rstrip("/") + "/services/oauth2/token"
    headers: dict[str, str] = {}
    form: dict[str, str] = {}
    flow = creds.auth_flow
    if flow == "client_credentials":
        form = {"grant_type": "client_credentials"}
        pair = f"{creds.client_id}:{read_org_secret(creds.client_secret_ref, 'client secret')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    elif flow == "password":
        form = {
            "grant_type": "password",
            "client_id": creds.client_id,
            "client_secret": read_org_secret(creds.client_secret_ref, "client secret"),
            "username": creds.username,
            "password": read_org_secret(creds.password_ref, "password"),
        }
    elif flow == "refresh_token":
        form = {
            "grant_type": "refresh_token",
            "client_id": creds.client_id,
            "refresh_token": read_org_secret(creds.refresh_token_ref, "refresh token"),
        }
        if creds.client_secret_ref:
            form["client_secret"] = read_org_secret(creds.client_secret_ref, "client secret")
    elif flow == "jwt_bearer":
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": _jwt(creds)}
    else:
        raise AuthenticationRefused(f"unknown auth flow {flow!r}")
    try:
        for attempt in Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(4),
            wait=wait_exponential_jitter(multiplier=0.5, max=5),
            reraise=True,
        ):
            with attempt:
                response = http.post(url, data=form, headers=headers, timeout=timeout)
                if response.status_code >= 500:
                    response.raise_for_status()
    except (requests.RequestException, ProtocolError) as exc:
        raise OrgUnreachable(f"cannot reach {url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        try:
            body = response.json()
            reason = f"{body.get('error', '')}: {body.get('error_description', '')}"
        except ValueError:
            reason = f"HTTP {response.status_code}"
        raise AuthenticationRefused(f"login to {creds.login_url} refused ({reason})")
    body = response.json()
    identity = str(body.get("id", ""))
    parts = identity.rstrip("/").split("/")
    return Token(
        access_token=body["access_token"],
        instance_url=body["instance_url"],
        salesforce_org_id=parts[-2] if len(parts) >= 2 else "",
        user_id=parts[-1] if parts else "",
    )


def _codes(content: Any) -> set[str]:
    """The error codes in simple-salesforce's parsed content (a list of {"errorCode", "message"})."""
    items: Iterable[Any] = content if isinstance(content, list) else [content]
    return {str(i.get("errorCode", "")) for i in items if isinstance(i, dict)}


def is_transient(exc: BaseException) -> bool:
    """The one retry rule of every Salesforce call (REST, Bulk, Metadata SOAP, logins): worth another try.

    Connection errors, timeouts and bodies cut off or stalled; HTTP 5xx without a code, or with a code in
    TRANSIENT_CODES; a 4xx whose code is in TRANSIENT_CODES (`QUERY_TIMEOUT` comes with 400); the concurrent
    long-requests limit (403 `REQUEST_LIMIT_EXCEEDED` "ConcurrentPerOrgLongTxn", unlike the daily total); a SOAP
    fault whose code is in TRANSIENT_CODES (a fault comes at 500 whatever it means: `INVALID_TYPE` is not
    retried)."""
    if isinstance(exc, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError):
        return True
    if isinstance(exc, ProtocolError | SocketTimeout):  # a streamed body cut off or stalled (read from urllib3)
        return True
    if isinstance(exc, requests.HTTPError):
        return exc.response is not None and exc.response.status_code >= 500
    if isinstance(exc, SalesforceError):
        if exc.code.rpartition(":")[2] in TRANSIENT_CODES or _concurrency_limit(str(exc)):
            return True
        return exc.status >= 500 and not (exc.soap and exc.code)
    if isinstance(exc, SalesforceExpiredSession):
        return False  # re-authentication, not a retry
    if isinstance(exc, LibraryError):
        return exc.status >= 500 or bool(_codes(exc.content) & TRANSIENT_CODES) or _concurrency_limit(str(exc.content))
    return False


def _concurrency_limit(text: str) -> bool:
    """REQUEST_LIMIT_EXCEEDED also says "ConcurrentPerOrgLongTxn Limit exceeded.": too many long requests running
    in the org at this moment, which passes; only the daily total ("TotalRequests") stops a job."""
    return "ConcurrentPerOrgLongTxn" in text


def is_limit_exceeded(exc: BaseException) -> bool:
    """The org's daily API requests are spent (REQUEST_LIMIT_EXCEEDED, not the concurrency limit)."""
    content = getattr(exc, "content", None)
    if content is None:
        return False
    return "REQUEST_LIMIT_EXCEEDED" in str(content) and not _concurrency_limit(str(content))


class OrgClient:
    """One logged-in connection to an org. Thread-safe counters; `call` wraps any simple-salesforce use."""

    def __init__(
        self,
        creds: Credentials,
        *,
        max_attempts: int = 6,
        api_call_cap: int = 0,
        timeout: float = 120.0,
        token: Token | None = None,
    ) -> None:
        self.creds = creds
        self.max_attempts = max_attempts
        self.api_call_cap = api_call_cap
        self.timeout = timeout
        self.http = new_http_session(creds)
        self.http.hooks["response"].append(self._on_response)
        self._lock = threading.Lock()
        self.api_calls = 0
        self.org_usage: tuple[int, int] | None = None  # (used, max) of the org's daily API requests
        self.token = token or obtain_token(creds, self.http)
        self.sf = self._client()

    def _client(self) -> Salesforce:
        return Salesforce(
            instance_url=self.token.instance_url,
            session_id=self.token.access_token,
            version=self.creds.api_version or DEFAULT_API_VERSION,
            session=self.http,
        )

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if "/services/oauth2/" in response.url:
            return
        with self._lock:
            self.api_calls += 1
        info = response.headers.get("Sforce-Limit-Info", "")
        match = _LIMIT_INFO.search(info)
        if match:
            self.org_usage = (int(match.group(1)), int(match.group(2)))
        telemetry.salesforce_call(self.token.salesforce_org_id if hasattr(self, "token") else "", self.org_usage)

    @property
    def salesforce_org_id(self) -> str:
        return self.token.salesforce_org_id

    def reauthenticate(self) -> None:
        log.info("re-authenticating to %s", self.creds.login_url)
        self.token = obtain_token(self.creds, self.http)
        self.sf = self._client()

    def check_budget(self, reserve_percent: int = 0) -> None:
        if self.api_call_cap and self.api_calls >= self.api_call_cap:
            raise ApiLimitExceeded(f"the policy's API budget of {self.api_call_cap} calls for this run is spent")
        if reserve_percent and self.org_usage:
            used, limit = self.org_usage
            if limit and (limit - used) * 100 < reserve_percent * limit:
                raise ApiLimitExceeded(
                    f"the org has {limit - used} of {limit} daily API requests left, below the policy's reserve"
                    f" of {reserve_percent}%"
                )

    def call(self, fn: Callable[[Salesforce], T], *, reserve_percent: int = 0) -> T:
        """Run fn(sf) with re-authentication on an expired session and retries on transient errors."""
        reauthenticated = False
        for attempt in range(1, self.max_attempts + 1):
            self.check_budget(reserve_percent)
            try:
                return fn(self.sf)
            except SalesforceExpiredSession:
                if reauthenticated:
                    raise AuthenticationRefused("the org keeps refusing the session after re-authentication") from None
                self.reauthenticate()
                reauthenticated = True
            except Exception as exc:
                if is_limit_exceeded(exc):
                    raise ApiLimitExceeded(
                        "the org's daily API request limit is exceeded (REQUEST_LIMIT_EXCEEDED)"
                    ) from None
                if not is_transient(exc) or attempt == self.max_attempts:
                    raise
                delay = min(0.2 * 2 ** (attempt - 1), 5.0)
                log.warning("transient Salesforce error (%s), retry %d in %.1f s", type(exc).__name__, attempt, delay)
                time.sleep(delay)  # back-off before a retry: a deliberate pause, not a wait for a condition
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A raw REST call on the instance (for what simple-salesforce does not wrap), with the same policy: an
        answer `is_transient` retries is retried, and raised as SalesforceError when it keeps coming; any other
        answer is returned as it is."""

        extra_headers = kwargs.pop("headers", {})

        def do(_: Salesforce) -> requests.Response:
            url = self.token.instance_url.rstrip("/") + path
            headers = {"Authorization": f"Bearer {self.token.access_token}", **extra_headers}
            response = self.http.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
            if response.status_code == 401:
                raise SalesforceExpiredSession(url, 401, "", response.content)
            limit = response.status_code == 403 and b"REQUEST_LIMIT_EXCEEDED" in response.content
            if limit and not _concurrency_limit(response.text):
                raise ApiLimitExceeded("the org's daily API request limit is exceeded (REQUEST_LIMIT_EXCEEDED)")
            if response.status_code >= 400:
                fault = soap_fault_of(response)  # a SOAP fault comes at 500 whatever it means: judged by its code
                if fault is not None:
                    error = SalesforceError(response.status_code, *fault, soap=True)
                else:
                    error = SalesforceError(response.status_code, *error_of(response))
                if is_transient(error):
                    response.close()
                    raise error  # retried here; still failing after the last attempt, it is the caller's
            return response

        return self.call(do)
