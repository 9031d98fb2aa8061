"""Discovery's adapter to a Salesforce org (describeGlobal, describe, access checks, Id lists, record counts, an
object's lowest and highest Id) through `services.sfclient`. Blocking Salesforce calls run in worker threads."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from services import sfclient as sfc
from services.discovery import domain as d
from services.discovery.ports import DescribeFailed, Fetched

NOT_MODIFIED = 304
log = logging.getLogger("sfvault.discovery")


class SalesforceOrg:
    """One logged-in org, used from worker threads."""

    def __init__(self, connection: d.Connection, *, max_attempts: int = 4, timeout: float = 60.0) -> None:
        self.creds = sfc.credentials_from_connection(connection)
        self.client = sfc.OrgClient(self.creds, max_attempts=max_attempts, timeout=timeout)
        self.version = self.creds.api_version

    @property
    def salesforce_org_id(self) -> str:
        return self.client.salesforce_org_id

    @property
    def instance_url(self) -> str:
        return self.client.token.instance_url

    @property
    def api_calls(self) -> int:
        return self.client.api_calls

    @property
    def org_usage(self) -> tuple[int, int]:
        """(used, max) of the org's daily API requests, as the last response said."""
        return self.client.org_usage or (0, 0)

    def _get(self, path: str, since: str = "") -> requests.Response:
        headers = {"If-Modified-Since": since} if since else {}
        return self.client.request("GET", f"/services/data/v{self.version}{path}", headers=headers)

    def live_ids(self, object_name: str) -> set[str]:
        """Every live record's Id (REST query, 2,000 a page); the object name is checked by the caller."""
        ids: set[str] = set()

        def read(sf: Any) -> None:
            for record in sf.query_all_iter(f"SELECT Id FROM {object_name}"):
                ids.add(str(record["Id"]))

        self.client.call(read)
        return ids

    def describe_global(self, since: str = "") -> Fetched:
        try:
            response = self._get("/sobjects", since)
        except (sfc.ApiLimitExceeded, sfc.AuthenticationRefused, sfc.OrgUnreachable):
            raise
        except Exception as exc:
            raise DescribeFailed(f"describeGlobal failed: {_reason(exc)}") from None
        if response.status_code == NOT_MODIFIED:
            return Fetched(None, response.headers.get("Date", since))
        if response.status_code != 200:
            raise DescribeFailed(f"describeGlobal failed: HTTP {response.status_code} {_error_code(response)}")
        return Fetched(response.json(), response.headers.get("Date", ""))

    def describe(self, name: str, since: str = "") -> Fetched:
        """One object's describe; raises DescribeFailed with a reason when the org will not give it."""
        try:
            response = self._get(f"/sobjects/{name}/describe", since)
        except (sfc.ApiLimitExceeded, sfc.AuthenticationRefused, sfc.OrgUnreachable):
            raise
        except Exception as exc:
            raise DescribeFailed(_reason(exc)) from None
        if response.status_code == NOT_MODIFIED:
            return Fetched(None, response.headers.get("Date", since))
        if response.status_code != 200:
            raise DescribeFailed(f"describe returned HTTP {response.status_code} {_error_code(response)}".strip())
        return Fetched(response.json(), response.headers.get("Date", ""))

    def record_counts(self, names: Sequence[str]) -> dict[str, int]:
        """The objects' approximate record counts (the Record Count API: Salesforce refreshes them now and then),
        a hundred objects a call. Only used to order the jobs: when the org will not say, what it said so far."""
        counts: dict[str, int] = {}
        for i in range(0, len(names), 100):
            batch = ",".join(urllib.parse.quote(n, safe="") for n in names[i : i + 100])
            try:
                response = self._get(f"/limits/recordCount?sObjects={batch}")
                body = response.json() if response.status_code == 200 else None
            except (sfc.ApiLimitExceeded, sfc.AuthenticationRefused, sfc.OrgUnreachable):
                raise
            except Exception as exc:
                log.warning("record counts not read (the jobs start in name order): %s", _reason(exc))
                return counts
            if not isinstance(body, dict):
                log.warning("record counts not read (the jobs start in name order): HTTP %s", response.status_code)
                return counts
            for entry in body.get("sObjects", []):
                if isinstance(entry, dict) and isinstance(entry.get("count"), int) and entry.get("name"):
                    counts[str(entry["name"])] = entry["count"]
        return counts

    def edge_id(self, object_name: str, *, highest: bool) -> str:
        """The object's lowest (or highest) record Id, one query; "" when it has none, or when the org will not
        answer (the object is then read whole: a split is an optimisation, never a condition)."""
        soql = f"SELECT Id FROM {object_name} ORDER BY Id {'DESC' if highest else 'ASC'} LIMIT 1"
        try:
            body = self.client.call(lambda sf: sf.query(soql))
        except (sfc.ApiLimitExceeded, sfc.AuthenticationRefused, sfc.OrgUnreachable):
            raise
        except Exception as exc:
            log.warning("the Id range of %s not read (the object is read whole): %s", object_name, _reason(exc))
            return ""
        records = body.get("records") or []
        return str(records[0]["Id"]) if records else ""

    def describe_many(
        self, wanted: Iterable[tuple[str, str]], parallel: int = 4
    ) -> dict[str, Fetched | DescribeFailed]:
        """Describe (name, If-Modified-Since) pairs a few at a time; failures are returned, not raised."""

        def one(item: tuple[str, str]) -> Fetched | DescribeFailed:
            try:
                return self.describe(*item)
            except DescribeFailed as exc:
                return exc

        items = list(wanted)
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items) or 1))) as pool:
            return dict(zip((n for n, _ in items), pool.map(one, items), strict=True))

    def check_access(self) -> list[str]:
        """What a backup needs, as problems a person can act on (an empty list: all is well)."""
        problems: list[str] = []
        try:
            global_ = self.describe_global()
            names = {o["name"] for o in (global_.body or {}).get("sobjects", [])}
        except DescribeFailed as exc:
            return [f"cannot list objects (describeGlobal): {exc}"]
        for obj in ("Account", "ContentVersion", "Attachment"):
            if obj not in names:
                problems.append(f"{obj} is not visible to this user")
                continue
            response = self._get(f"/query?q=SELECT+Id+FROM+{obj}+LIMIT+1")
            if response.status_code != 200:
                problems.append(f"cannot query {obj}: {_error_code(response) or response.status_code}")
        problem = self._check_metadata_api()
        if problem:
            problems.append(problem)
        return problems

    def _check_metadata_api(self) -> str:
        # A raw SOAP call on our own HTTP session: simple-salesforce's mdapi (zeep) has its own session and
        # would ignore the org's CA bundle.
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
            ' xmlns:met="http://soap.sforce.com/2006/04/metadata">'
            "<soapenv:Header><met:SessionHeader><met:sessionId>{token}</met:sessionId></met:SessionHeader>"
            "</soapenv:Header><soapenv:Body><met:describeMetadata><met:asOfVersion>{version}</met:asOfVersion>"
            "</met:describeMetadata></soapenv:Body></soapenv:Envelope>"
        )
        try:
            response = self.client.request(
                "POST",
                f"/services/Soap/m/{self.version}",
                data=body.format(token=self.client.token.access_token, version=self.version).encode(),
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
            )
        except Exception as exc:
            return f"Metadata API not reachable: {_reason(exc)}"
        if response.status_code != 200 or b"describeMetadataResponse" not in response.content:
            fault = ""
            text = response.text
            if "<faultcode>" in text:
                fault = text.split("<faultcode>", 1)[1].split("</faultcode>", 1)[0]
            return f"Metadata API not permitted: HTTP {response.status_code} {fault}".strip()
        return ""


def _error_code(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return f"{body[0].get('errorCode', '')}: {body[0].get('message', '')}".strip(": ")
    return ""


def _reason(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    return f"{type(exc).__name__}{f' (HTTP {status})' if status else ''}"
