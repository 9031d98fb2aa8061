"""Salesforce reads for jobs: REST query pages, Bulk API 2.0 query jobs streamed page by page, /deleted,
blob downloads and a small Metadata API SOAP client. Built on services.sfclient.OrgClient (re-auth,
retries, API accounting, budget)."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree as ET

import requests
from isal import isal_zlib
from sfvault.jobs.v1 import jobs_pb2
from simple_salesforce.exceptions import SalesforceExpiredSession
from urllib3.exceptions import ProtocolError

from services.sfclient import (
    ApiLimitExceeded,
    Credentials,
    OrgClient,
    SalesforceError,
    Token,
    credentials_from_connection,
    error_of,
)

log = logging.getLogger(__name__)
MD_NS = "http://soap.sforce.com/2006/04/metadata"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"


class LocatorExpired(SalesforceError):
    """INVALID_QUERY_LOCATOR: restart the query from the last stored position."""


class BulkJobGone(SalesforceError):
    """The Bulk job or its results are no longer available: run the query again."""


def _raise_for(response: requests.Response) -> None:
    """A 4xx OrgClient returned (what `is_transient` retries never arrives here) as the job's error."""
    if response.status_code < 400:
        return
    code, message = error_of(response)
    if response.status_code == 403 and code == "REQUEST_LIMIT_EXCEEDED":
        raise ApiLimitExceeded("the org's daily API request limit is exceeded (REQUEST_LIMIT_EXCEEDED)")
    if code in ("INVALID_QUERY_LOCATOR", "INVALIDLOCATOR"):
        raise LocatorExpired(response.status_code, code, message)
    if response.status_code in (404, 412) and "/jobs/query/" in response.url:
        raise BulkJobGone(response.status_code, code, message)
    raise SalesforceError(response.status_code, code, message)


@dataclass
class _Login:
    token: Token
    issued: tuple[float, float] | None  # the org's clock at the login: (issued_at, time.monotonic() then)
    at: float  # time.monotonic() of the login


class SessionLogins:
    """The logins of a jobrunner process, one per org connection per session: a session's jobs (a hundred or more
    for a wide org, and each incremental job is a single API call) share their login instead of one each (a real
    org's login takes a round trip of its own and logins per hour are limited). Per session, so that every session
    reads the org's clock afresh (the window's end is org time; sforg's clock moves between sessions in tests).
    A login is kept at most `keep_s` and forgotten once it is refused (the job logs in again)."""

    def __init__(self, keep_s: float = 1800.0, most: int = 256) -> None:
        self.keep_s = keep_s
        self.most = most
        self._lock = threading.Lock()
        self._logins: dict[tuple[str, Credentials], _Login] = {}

    def get(self, session_id: str, creds: Credentials) -> _Login | None:
        with self._lock:
            login = self._logins.get((session_id, creds))
            if login is not None and time.monotonic() - login.at > self.keep_s:
                del self._logins[(session_id, creds)]
                return None
            return login

    def put(self, session_id: str, creds: Credentials, token: Token, issued: tuple[float, float] | None) -> None:
        with self._lock:
            if len(self._logins) >= self.most:  # the oldest go first (sessions end; their logins are not needed)
                for key in sorted(self._logins, key=lambda k: self._logins[k].at)[: len(self._logins) // 2]:
                    del self._logins[key]
            self._logins[(session_id, creds)] = _Login(token, issued, time.monotonic())


class JobOrgClient(OrgClient):
    """OrgClient that also reads the org's clock from the token response's issued_at (the org's own time, in
    milliseconds; sforg's clock can be moved), at no API call. With `logins`, the session's login to the org is
    taken when there is one (and its clock reading), and kept for the session's next jobs when there is not."""

    def __init__(
        self, creds: Credentials, *, logins: SessionLogins | None = None, session_id: str = "", **kwargs: Any
    ) -> None:
        self._issued: tuple[float, float] | None = None
        self._logins = logins if session_id else None
        self._session_id = session_id
        kept = self._logins.get(session_id, creds) if self._logins is not None else None
        if kept is not None:
            self._issued = kept.issued
            kwargs["token"] = kept.token
        super().__init__(creds, **kwargs)
        if kept is None:
            self._keep()

    def _keep(self) -> None:
        if self._logins is not None:
            self._logins.put(self._session_id, self.creds, self.token, self._issued)

    def reauthenticate(self) -> None:
        super().reauthenticate()  # the session's login was refused (expired, revoked): the new one is kept
        self._keep()

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if "/services/oauth2/" in response.url and response.status_code == 200:
            try:
                issued = int(response.json()["issued_at"]) / 1000.0
                self._issued = (issued, time.monotonic())
            except (ValueError, KeyError, TypeError):
                pass
        super()._on_response(response, *args, **kwargs)

    @classmethod
    def for_job(cls, spec: jobs_pb2.JobSpec, *, timeout: float, logins: SessionLogins | None = None) -> JobOrgClient:
        """The client of the job's org (its connection, its API call cap)."""
        return cls._of(spec, spec.connection, timeout, logins)

    @classmethod
    def for_restore(
        cls, spec: jobs_pb2.JobSpec, *, timeout: float, logins: SessionLogins | None = None
    ) -> JobOrgClient:
        """The client of a restore job's TARGET org (spec.restore.target_connection; the source's connection
        when the restore writes back into the org it came from)."""
        target = spec.restore.target_connection if spec.restore.target_connection.login_url else spec.connection
        return cls._of(spec, target, timeout, logins)

    @classmethod
    def _of(cls, spec: jobs_pb2.JobSpec, connection: Any, timeout: float, logins: SessionLogins | None) -> JobOrgClient:
        return cls(
            credentials_from_connection(connection),
            api_call_cap=int(spec.api_call_cap),
            timeout=timeout,
            logins=logins,
            session_id=spec.session_id,
        )

    def reads(self, reserve_percent: int) -> OrgReader:
        return OrgReader(self, reserve_percent=reserve_percent)

    def writes(self, reserve_percent: int) -> Any:
        from services.jobrunner.salesforce_write import OrgWriter  # it builds on this module

        return OrgWriter(self, reserve_percent=reserve_percent)

    def metadata(self, reserve_percent: int) -> MetadataClient:
        return MetadataClient(self, reserve_percent=reserve_percent)

    def org_now(self) -> dt.datetime:
        if self._issued is None:
            return dt.datetime.now(dt.UTC)
        issued, at = self._issued
        return dt.datetime.fromtimestamp(issued + (time.monotonic() - at), dt.UTC)


@dataclass
class RestPage:
    total_size: int
    records: list[dict[str, Any]]
    next_url: str | None


@dataclass
class BulkJob:
    job_id: str
    state: str
    records: int
    error: str = ""


class OrgReader:
    """The reads a job makes, each through OrgClient's retry/re-auth/budget policy."""

    def __init__(self, client: JobOrgClient, *, reserve_percent: int = 0, timeout: float = 120.0) -> None:
        self.client = client
        self.version = client.creds.api_version
        self.reserve_percent = reserve_percent
        self.timeout = timeout

    @property
    def base(self) -> str:
        return f"/services/data/v{self.version}"

    def _get(self, path: str, **kwargs: Any) -> requests.Response:
        self.client.check_budget(self.reserve_percent)
        response = self.client.request("GET", path, **kwargs)
        _raise_for(response)
        return response

    # ------------------------------------------------------------ REST
    def query_page(self, soql: str, *, query_all: bool = True, batch_size: int = 2000) -> RestPage:
        resource = "queryAll" if query_all else "query"
        response = self._get(
            f"{self.base}/{resource}/",
            params={"q": soql},
            headers={"Sforce-Query-Options": f"batchSize={batch_size}"},
        )
        return self._page(response)

    def query_more(self, next_url: str, *, batch_size: int = 2000) -> RestPage:
        response = self._get(next_url, headers={"Sforce-Query-Options": f"batchSize={batch_size}"})
        return self._page(response)

    @staticmethod
    def _page(response: requests.Response) -> RestPage:
        body = response.json()
        return RestPage(int(body.get("totalSize", 0)), list(body.get("records", [])), body.get("nextRecordsUrl"))

    def deleted(self, object_name: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        params = {"start": _rest_time(start), "end": _rest_time(end)}
        return dict(self._get(f"{self.base}/sobjects/{object_name}/deleted/", params=params).json())

    def reads_at_once(
        self, queries: Sequence[tuple[str, bool]], deleted: tuple[str, dt.datetime, dt.datetime] | None
    ) -> tuple[list[RestPage | None], dict[str, Any] | None]:
        """Up to 5 query first pages and a delete log in one /composite request: one API call ("the entire series
        of requests counts as a single call toward your API limits"). A subrequest the org refused is None: the
        caller asks it again alone, where its error is handled."""
        gets = [
            f"{self.base}/{'queryAll' if query_all else 'query'}/?{urllib.parse.urlencode({'q': soql})}"
            for soql, query_all in queries
        ]
        if deleted is not None:
            name, start, end = deleted
            window = urllib.parse.urlencode({"start": _rest_time(start), "end": _rest_time(end)})
            gets.append(f"{self.base}/sobjects/{name}/deleted/?{window}")
        self.client.check_budget(self.reserve_percent)
        body = {
            "allOrNone": False,
            "compositeRequest": [{"method": "GET", "url": u, "referenceId": f"r{n}"} for n, u in enumerate(gets)],
        }
        response = self.client.request("POST", f"{self.base}/composite", json=body)
        _raise_for(response)
        answers = list(response.json().get("compositeResponse") or [])
        ok = [
            a.get("body") if a.get("httpStatusCode") == 200 and isinstance(a.get("body"), dict) else None
            for a in answers
        ]
        ok += [None] * (len(gets) - len(ok))
        pages: list[RestPage | None] = [
            None
            if b is None
            else RestPage(int(b.get("totalSize", 0)), list(b.get("records", [])), b.get("nextRecordsUrl"))
            for b in ok[: len(queries)]
        ]
        return pages, (ok[len(queries)] if deleted is not None else None)

    # ------------------------------------------------------------ Bulk API 2.0
    def bulk_create(self, soql: str, *, query_all: bool = True) -> str:
        self.client.check_budget(self.reserve_percent)
        body = {
            "operation": "queryAll" if query_all else "query",
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        }
        response = self.client.request("POST", f"{self.base}/jobs/query", json=body)
        _raise_for(response)
        return str(response.json()["id"])

    def bulk_wait(self, job_id: str, *, max_wait_s: float = 24 * 3600.0, should_stop: Any = None) -> BulkJob:
        delay, waited = 0.2, 0.0
        while True:
            info = self._get(f"{self.base}/jobs/query/{job_id}").json()
            state = str(info.get("state", ""))
            if state in ("JobComplete", "Failed", "Aborted"):
                return BulkJob(
                    job_id, state, int(info.get("numberRecordsProcessed") or 0), info.get("errorMessage", "")
                )
            if waited > max_wait_s:
                raise SalesforceError(0, "BULK_TIMEOUT", f"Bulk job {job_id} still {state} after {waited:.0f} s")
            if should_stop is not None:
                should_stop()
            time.sleep(delay)  # polling back-off while Salesforce runs the job, not a wait for our own work
            waited += delay
            delay = min(delay * 2, 30.0)

    def bulk_page(self, job_id: str, locator: str, max_records: int) -> tuple[int, str, Iterator[list[str]]]:
        """One result page, streamed: (Sforce-NumberOfRecords, next locator or "", its CSV rows, the header
        first; blank lines are skipped)."""
        params: dict[str, Any] = {"maxRecords": max_records}
        if locator:
            params["locator"] = locator
        response = self._get(
            f"{self.base}/jobs/query/{job_id}/results",
            params=params,
            headers={"Accept": "text/csv", "Accept-Encoding": "gzip"},
            stream=True,
        )
        count = int(response.headers.get("Sforce-NumberOfRecords", "-1"))
        nxt = response.headers.get("Sforce-Locator", "null")
        return count, ("" if nxt in ("", "null") else nxt), _csv_rows(response)

    # ------------------------------------------------------------ blobs
    def blob(self, object_name: str, record_id: str, field: str) -> requests.Response:
        return self._get(f"{self.base}/sobjects/{object_name}/{record_id}/{field}", stream=True)


# isal's stubs declare its error class as an instance
_INFLATE_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]


class _PageBody(io.RawIOBase):
    """A streamed result page's body, 64 KiB of the wire at a time: inflated when it came gzipped, and without
    NUL characters (Salesforce exports occasionally hold them; PostgreSQL text cannot; a NUL byte never occurs
    inside a multi-byte UTF-8 character, so bytes can be stripped before decoding).

    urllib3 (2.6 and later) inflates a streamed body in steps bounded by the size the reader asked for and
    copies the rest of its input again at every step; under a text reader of a 50,000-row page that was a
    fifth of the jobrunner's CPU. A gzip body of several members (allowed by RFC 1952) is inflated whole; a
    step inflates at most 64 KiB of the wire (about 64 MiB at deflate's largest ratio). Inflated by ISA-L (a
    third of zlib's CPU); a body that is not valid gzip is a ProtocolError like a cut-off one: the page is read
    again."""

    def __init__(self, raw: Any, *, gzipped: bool) -> None:
        self._raw = raw
        self._inflate = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS) if gzipped else None
        self._out = memoryview(b"")
        self._started = False  # a byte of the wire arrived

    def readable(self) -> bool:
        return True

    def _next(self) -> bytes | None:
        """The next piece of the body (possibly empty), None at its end."""
        if self._inflate is None:  # identity, or an encoding urllib3 decodes
            return self._raw.read(1 << 16, decode_content=True) or None
        wire = self._inflate.unused_data or self._raw.read(1 << 16, decode_content=False)
        if self._inflate.eof:  # the next member, if any; bytes after the last one are ignored, as urllib3 does
            while wire == b"\x1f":  # the next member's magic split across reads
                more = self._raw.read(1 << 16, decode_content=False)
                if not more:
                    break
                wire += more
            if not wire.startswith(b"\x1f\x8b"):
                return None
            self._inflate = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
        if not wire:
            if not self._started:
                return None  # an empty body, whatever its encoding says
            raise ProtocolError("the gzip body ended before its last member did")
        self._started = True
        try:
            return self._inflate.decompress(wire)
        except _INFLATE_ERROR as exc:
            raise ProtocolError(f"the gzip body is corrupt: {exc}") from exc

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            piece = self._next()
            if piece is None:
                return 0
            self._out = memoryview(piece.replace(b"\x00", b"") if b"\x00" in piece else piece)
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


def _csv_rows(response: requests.Response) -> Iterator[list[str]]:
    """Parse a streamed CSV page without holding it in memory (decoded as UTF-8 whatever the headers say)."""
    gzipped = response.headers.get("Content-Encoding", "").strip().lower() == "gzip"
    body = io.BufferedReader(_PageBody(response.raw, gzipped=gzipped), 1 << 16)
    try:
        yield from filter(None, csv.reader(io.TextIOWrapper(body, encoding="utf-8", newline="")))
    finally:
        response.close()


def _rest_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


# ---------------------------------------------------------------- Metadata API (SOAP)


@dataclass(frozen=True)
class FileProperties:
    type: str
    full_name: str
    file_name: str
    last_modified: str


def soap_post(
    client: OrgClient, path: str, namespace: tuple[str, str], op: str, body: str
) -> tuple[str, requests.Response]:
    """One SOAP operation posted to `path` of the org (e.g. /services/Soap/m/62.0): `body`, the operation's element,
    in an envelope whose SessionHeader carries the client's current session (a re-authentication replaces it),
    in `namespace` (prefix, URI: the API's, e.g. ("met", MD_NS)). The URL and the answer, not yet judged."""
    prefix, uri = namespace
    token = client.token
    url = f"{token.instance_url.rstrip('/')}{path}"
    envelope = (
        f'<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_NS}"'
        f' xmlns:{prefix}="{uri}"><soapenv:Header><{prefix}:SessionHeader><{prefix}:sessionId>'
        f"{_xml(token.access_token)}</{prefix}:sessionId></{prefix}:SessionHeader></soapenv:Header>"
        f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
    response = client.http.post(
        url,
        data=envelope.encode(),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": op},
        timeout=client.timeout,
    )
    return url, response


class MetadataClient:
    """describeMetadata, listMetadata and retrieve over plain requests, on OrgClient's own session (trust_env
    off, the org's CA), with re-authentication on INVALID_SESSION_ID. Avoids simple-salesforce's mdapi header
    mutation and zeep's separate session (shared/salesforce/WIRE.md 1.1, 1.2)."""

    def __init__(self, client: OrgClient, *, reserve_percent: int = 0) -> None:
        self.client = client
        self.reserve_percent = reserve_percent

    def _call(self, op: str, body: str) -> ET.Element:
        """One SOAP call through OrgClient.call: an expired session re-authenticates (INVALID_SESSION_ID), a fault
        `is_transient` retries (SERVER_UNAVAILABLE, UNKNOWN_EXCEPTION, ...) is retried with back-off, any other
        fault fails with its faultcode."""

        def post(_: Any) -> ET.Element:
            url, response = soap_post(
                self.client, f"/services/Soap/m/{self.client.creds.api_version}", ("met", MD_NS), op, body
            )
            try:
                root = ET.fromstring(response.content)
            except ET.ParseError:
                if response.status_code >= 400:  # not a SOAP answer (a proxy's page): judged by its status
                    raise SalesforceError(response.status_code, "", response.text[:300]) from None
                raise SalesforceError(response.status_code, "NOT_SOAP", f"{op}: the answer is not XML") from None
            fault = root.find(f".//{{{SOAP_NS}}}Fault")
            if fault is None:
                fault = root.find(".//Fault")
            if fault is None:
                if response.status_code >= 400:
                    raise SalesforceError(response.status_code, "", response.text[:300])
                return root
            code = (fault.findtext("faultcode") or "").rpartition(":")[2]
            text = fault.findtext("faultstring") or ""
            if code == "INVALID_SESSION_ID":
                raise SalesforceExpiredSession(url, response.status_code, "", response.content)
            if code == "REQUEST_LIMIT_EXCEEDED":
                raise ApiLimitExceeded("the org's daily API request limit is exceeded (REQUEST_LIMIT_EXCEEDED)")
            raise SalesforceError(response.status_code, code, text, soap=True)

        return self.client.call(post, reserve_percent=self.reserve_percent)

    def describe(self) -> list[tuple[str, list[str]]]:
        """(xmlName, childXmlNames) of every metadata type."""
        version = self.client.creds.api_version
        root = self._call(
            "describeMetadata",
            f"<met:describeMetadata><met:asOfVersion>{version}</met:asOfVersion></met:describeMetadata>",
        )
        out = []
        for mo in root.iter(f"{{{MD_NS}}}metadataObjects"):
            name = mo.findtext(f"{{{MD_NS}}}xmlName") or ""
            children = [c.text or "" for c in mo.findall(f"{{{MD_NS}}}childXmlNames")]
            if name:
                out.append((name, [c for c in children if c]))
        return out

    def list_components(self, types: list[str]) -> list[FileProperties]:
        """listMetadata, three queries per call (the API's limit)."""
        version = self.client.creds.api_version
        out: list[FileProperties] = []
        for i in range(0, len(types), 3):
            queries = "".join(f"<met:queries><met:type>{_xml(t)}</met:type></met:queries>" for t in types[i : i + 3])
            root = self._call(
                "listMetadata",
                f"<met:listMetadata>{queries}<met:asOfVersion>{version}</met:asOfVersion></met:listMetadata>",
            )
            for r in root.iter(f"{{{MD_NS}}}result"):
                out.append(
                    FileProperties(
                        r.findtext(f"{{{MD_NS}}}type") or "",
                        r.findtext(f"{{{MD_NS}}}fullName") or "",
                        r.findtext(f"{{{MD_NS}}}fileName") or "",
                        r.findtext(f"{{{MD_NS}}}lastModifiedDate") or "",
                    )
                )
        return out

    def retrieve(self, members: dict[str, list[str]], *, should_stop: Any = None) -> bytes:
        """A retrieve of these components; returns the zip."""
        version = self.client.creds.api_version
        types = "".join(
            "<met:types>" + "".join(f"<met:members>{_xml(m)}</met:members>" for m in names) + f"<met:name>{_xml(t)}"
            "</met:name></met:types>"
            for t, names in sorted(members.items())
        )
        root = self._call(
            "retrieve",
            f"<met:retrieve><met:retrieveRequest><met:apiVersion>{version}</met:apiVersion>"
            f"<met:singlePackage>true</met:singlePackage><met:unpackaged>{types}"
            f"<met:version>{version}</met:version></met:unpackaged></met:retrieveRequest></met:retrieve>",
        )
        async_id = next((e.text for e in root.iter(f"{{{MD_NS}}}id")), None)
        if not async_id:
            raise SalesforceError(0, "RETRIEVE", "retrieve returned no id")
        delay = 0.2
        while True:
            result = self._call(
                "checkRetrieveStatus",
                f"<met:checkRetrieveStatus><met:asyncProcessId>{_xml(async_id)}</met:asyncProcessId>"
                "<met:includeZip>true</met:includeZip></met:checkRetrieveStatus>",
            )
            done = (next((e.text for e in result.iter(f"{{{MD_NS}}}done")), "") or "").lower() == "true"
            status = next((e.text for e in result.iter(f"{{{MD_NS}}}status")), "") or ""
            if status == "Failed":
                message = next((e.text for e in result.iter(f"{{{MD_NS}}}errorMessage")), "") or ""
                raise SalesforceError(0, "RETRIEVE_FAILED", message)
            if done or status == "Succeeded":
                zipped = next((e.text for e in result.iter(f"{{{MD_NS}}}zipFile")), "") or ""
                return base64.b64decode(zipped)
            if should_stop is not None:
                should_stop()
            time.sleep(delay)  # polling Salesforce's asynchronous retrieve
            delay = min(delay * 2, 10.0)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def blob_path_ok(path: str) -> bool:
    return bool(re.match(r"^/services/data/v\d+\.\d/", path))


def quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


__all__ = ["JobOrgClient", "MetadataClient", "OrgReader", "SalesforceError", "SalesforceExpiredSession"]
