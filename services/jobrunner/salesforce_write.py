"""Salesforce writes for restore jobs (OrgWriter): the target's current state read by Id (REST queryAll, 200 Ids
a call) or a whole object at once (Bulk API 2.0 queryAll, streamed), sObject Collections create / update /
upsert (200 records a call, allOrNone false, per-record errors), SOAP partner `undelete` (200 Ids a call), Bulk
API 2.0 ingest jobs for large batches, and the records the restoring user created since a time (what a batch
whose answer was lost created). Built on OrgClient (re-auth, budget, API accounting) and OrgReader.

Retries follow the backup's rule (`is_transient`), except for a create: a create call whose answer was lost
(connection cut, timeout, 5xx) may have created its records, so it is never sent again here: it raises
WriteAnswerLost, the job is handed back, and its next attempt settles the batch's intent by finding what it
created (restore_job.py). Updates, upserts on an external Id and undeletes are idempotent and retried."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree as ET

import requests
from simple_salesforce.exceptions import SalesforceExpiredSession
from urllib3.exceptions import ProtocolError

from services.jobrunner import domain
from services.jobrunner.salesforce import JobOrgClient, OrgReader, SalesforceError, _csv_rows, _raise_for
from services.sfclient import ApiLimitExceeded, _concurrency_limit, error_of, soap_fault_of

log = logging.getLogger(__name__)
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER_NS = "urn:partner.soap.sforce.com"
BATCH = 200  # records per Collections call, Ids per undelete and per query by Id
# records/s the first ingest job of a writer is expected to go at, before the org has shown its own pace: on the
# fast side (a first poll too soon costs one call, once; one too late keeps the job's results, and the next batch
# waiting behind them, for the difference)
FIRST_INGEST_RATE = 10_000.0
FEW_FIRST_PAGE = 2000  # records of the REST page query_object(few_first=True) reads before a Bulk job


class WriteAnswerLost(RuntimeError):
    """A create call was sent and its answer lost: whether the org created the records is unknown. Never
    re-sent blindly: the job is handed back and its next attempt resolves the batch's intent."""


@dataclass(frozen=True)
class WriteResult:
    """One record's result of a write: its Id (new for a create), or Salesforce's error code and message."""

    id: str | None
    success: bool
    code: str = ""
    message: str = ""
    created: bool = False
    fields: tuple[str, ...] = ()


def _result(item: dict[str, Any]) -> WriteResult:
    errors = item.get("errors") or []
    first = errors[0] if errors else {}
    return WriteResult(
        id=item.get("id") or None,
        success=bool(item.get("success")),
        code=str(first.get("statusCode") or first.get("errorCode") or ""),
        message=str(first.get("message") or ""),
        created=bool(item.get("created")),
        fields=tuple(first.get("fields") or ()),
    )


def csv_cell(value: Any, *, null: str = "") -> str:
    """A value as a Bulk ingest CSV cell; `null` is what None becomes ("#N/A" sets null on update)."""
    if value is None:
        return null
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def soql_list(values: list[str]) -> str:
    return ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)


def _plain(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """REST query records without their `attributes` (as a Bulk read gives them)."""
    for r in records:
        r.pop("attributes", None)
    return records


def parse_bulk_error(text: str) -> tuple[str, str, tuple[str, ...]]:
    """`CODE:message:fields --` -> (code, message, fields)."""
    text = text.strip()
    code, _, rest = text.partition(":")
    rest = rest.removesuffix("--").rstrip()
    message, _, fields = rest.rpartition(":")
    if not message:
        message, fields = rest, ""
    return code, message, tuple(f for f in fields.strip().split(",") if f)


class OrgWriter:
    """The calls a restore job makes to its target org, each counted (api calls on the client, write calls
    here)."""

    def __init__(self, client: JobOrgClient, *, reserve_percent: int = 0, bulk_poll_max_s: float = 3600.0) -> None:
        self.client = client
        self.reader = OrgReader(client, reserve_percent=reserve_percent)
        self.reserve_percent = reserve_percent
        self.version = client.creds.api_version
        self.bulk_poll_max_s = bulk_poll_max_s
        self._lock = threading.Lock()
        self._write_calls = 0
        # records/s the org processed on the last ingest job of each operation (when its first poll comes)
        self._ingest_rate: dict[str, float] = {}

    @property
    def base(self) -> str:
        return f"/services/data/v{self.version}"

    @property
    def write_calls(self) -> int:
        return self._write_calls

    def _wrote(self, n: int = 1) -> None:
        with self._lock:
            self._write_calls += n

    # ------------------------------------------------------------ identity and describe
    def user_id(self) -> str:
        return self.client.token.user_id

    def describe(self, object_name: str) -> dict[str, Any]:
        return dict(self.reader._get(f"{self.base}/sobjects/{object_name}/describe").json())

    def object_names(self) -> list[str]:
        """The objects a restore can write: createable and queryable ones of describeGlobal."""
        body = self.reader._get(f"{self.base}/sobjects").json()
        return [
            str(o["name"])
            for o in body.get("sobjects", [])
            if o.get("createable") and o.get("queryable") and not o.get("deprecatedAndHidden")
        ]

    # ------------------------------------------------------------ reads of the target's state
    def _query_all(self, soql: str, *, query_all: bool = True) -> list[dict[str, Any]]:
        page = self.reader.query_page(soql, query_all=query_all)
        rows = list(page.records)
        while page.next_url:
            page = self.reader.query_more(page.next_url)
            rows.extend(page.records)
        return _plain(rows)

    def query_ids(self, object_name: str, fields: list[str], ids: list[str]) -> list[dict[str, Any]]:
        """The records of these Ids (queryAll: the recycle bin too), 200 Ids a call."""
        return self.query_in(object_name, fields, "Id", ids)

    def query_in(self, object_name: str, fields: list[str], field: str, values: list[str]) -> list[dict[str, Any]]:
        select = ", ".join(dict.fromkeys(["Id", *fields]))
        out: list[dict[str, Any]] = []
        for i in range(0, len(values), BATCH):
            chunk = values[i : i + BATCH]
            out.extend(self._query_all(f"SELECT {select} FROM {object_name} WHERE {field} IN ({soql_list(chunk)})"))
        return out

    def query_object(
        self, object_name: str, fields: list[str], types: dict[str, str], *, few_first: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Every record of the object (queryAll), through one Bulk API 2.0 job, streamed page by page and typed
        as REST returns them (`types`: field -> the describe's type). `few_first`: the object may hold few records
        (the target's state, before a restore: an object a disaster emptied): one REST page is read first, and is
        all when the object holds no more (one call, not a Bulk job's three); a larger object costs that call more.
        A query too long for a REST request line (a very wide object) goes to Bulk at once."""
        names = list(dict.fromkeys(["Id", *fields]))
        soql = f"SELECT {', '.join(names)} FROM {object_name}"
        if few_first and domain.rest_fits(soql):
            page = self.reader.query_page(soql, query_all=True, batch_size=FEW_FIRST_PAGE)
            if not page.next_url:
                yield from _plain(page.records)
                return
        selection = domain.Selection(rest_fields=tuple(names), bulk_fields=tuple(names), types=dict(types))
        job_id = self.reader.bulk_create(soql, query_all=True)
        job = self.reader.bulk_wait(job_id, max_wait_s=self.bulk_poll_max_s)
        if job.state != "JobComplete":
            raise SalesforceError(0, "BULK_" + job.state.upper(), job.error or f"Bulk job {job.state}")
        locator = ""
        while True:
            _count, nxt, rows = self.reader.bulk_page(job_id, locator, 50_000)
            header = next(rows, None)
            if header is not None:
                decode = domain.csv_decoder(header, selection)
                for row in rows:
                    yield decode(row)
            if not nxt:
                return
            locator = nxt

    def created_since(
        self, object_name: str, user_id: str, since: dt.datetime, fields: list[str]
    ) -> list[dict[str, Any]]:
        """The records the restoring user created at or after `since` (what a batch whose answer was lost
        created), with `fields`."""
        select = ", ".join(dict.fromkeys(["Id", *fields]))
        when = since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._query_all(
            f"SELECT {select} FROM {object_name} WHERE CreatedById = '{user_id}' AND CreatedDate >= {when}",
            query_all=False,
        )

    # ------------------------------------------------------------ sObject Collections
    def _once(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One call that is not retried once it may have reached the org (a create): a lost answer is
        WriteAnswerLost. An expired session (401: nothing was done) re-authenticates and is sent again."""
        extra_headers = kwargs.pop("headers", {})

        def do(_: Any) -> requests.Response:
            url = self.client.token.instance_url.rstrip("/") + path
            headers = {"Authorization": f"Bearer {self.client.token.access_token}", **extra_headers}
            try:
                response = self.client.http.request(method, url, headers=headers, timeout=self.client.timeout, **kwargs)
                response.content  # noqa: B018 -- the whole answer, or the loss of it, here
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                raise WriteAnswerLost(f"{method}: the answer was lost ({type(exc).__name__})") from None
            except ProtocolError as exc:
                raise WriteAnswerLost(f"{method}: the answer was cut off ({type(exc).__name__})") from None
            if response.status_code == 401:
                raise SalesforceExpiredSession(url, 401, "", response.content)
            if response.status_code == 403 and b"REQUEST_LIMIT_EXCEEDED" in response.content:
                if not _concurrency_limit(response.text):
                    raise ApiLimitExceeded("the org's daily API request limit is exceeded (REQUEST_LIMIT_EXCEEDED)")
                # the concurrency limit refuses the call before doing anything: worth another try
                raise SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.")
            if response.status_code >= 500:
                raise WriteAnswerLost(f"{method}: the org answered {response.status_code}; the outcome is unknown")
            return response

        self.client.check_budget(self.reserve_percent)
        return self.client.call(do, reserve_percent=self.reserve_percent)

    def _collection(self, method: str, path: str, object_name: str, records: list[dict[str, Any]]) -> list[WriteResult]:
        out: list[WriteResult] = []
        for i in range(0, len(records), BATCH):
            chunk = records[i : i + BATCH]
            body = {"allOrNone": False, "records": [{"attributes": {"type": object_name}, **r} for r in chunk]}
            if method == "POST":
                response = self._once(method, path, json=body)
            else:
                self.client.check_budget(self.reserve_percent)
                response = self.client.request(method, path, json=body)
            self._wrote()
            _raise_for(response)
            items = response.json()
            if not isinstance(items, list) or len(items) != len(chunk):
                raise SalesforceError(
                    response.status_code, "BAD_ANSWER", f"{len(chunk)} records sent, answer unreadable"
                )
            out.extend(_result(item) for item in items)
        return out

    def create(self, object_name: str, records: list[dict[str, Any]]) -> list[WriteResult]:
        """New records (no Id), 200 a call; results in order. A lost answer: WriteAnswerLost."""
        return self._collection("POST", f"{self.base}/composite/sobjects", object_name, records)

    def update(self, object_name: str, records: list[dict[str, Any]]) -> list[WriteResult]:
        """Records carrying their "Id", 200 a call."""
        return self._collection("PATCH", f"{self.base}/composite/sobjects", object_name, records)

    def upsert(self, object_name: str, field: str, records: list[dict[str, Any]]) -> list[WriteResult]:
        """Matched on an external-Id field (each record carries it): updated when found, else created."""
        return self._collection("PATCH", f"{self.base}/composite/sobjects/{object_name}/{field}", object_name, records)

    # ------------------------------------------------------------ SOAP undelete
    def undelete(self, ids: list[str]) -> list[WriteResult]:
        """Records back from the recycle bin with their Ids (and their cascade-deleted children), 200 a call."""
        out: list[WriteResult] = []
        for i in range(0, len(ids), BATCH):
            chunk = ids[i : i + BATCH]
            out.extend(self._undelete(chunk))
        return out

    def _undelete(self, ids: list[str]) -> list[WriteResult]:
        def post(_: Any) -> list[WriteResult]:
            token = self.client.token
            url = f"{token.instance_url.rstrip('/')}/services/Soap/u/{self.version}"
            body = "".join(f"<urn:ids>{i}</urn:ids>" for i in ids)
            envelope = (
                f'<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_NS}"'
                f' xmlns:urn="{PARTNER_NS}"><soapenv:Header><urn:SessionHeader><urn:sessionId>{token.access_token}'
                f"</urn:sessionId></urn:SessionHeader></soapenv:Header><soapenv:Body><urn:undelete>{body}"
                "</urn:undelete></soapenv:Body></soapenv:Envelope>"
            )
            response = self.client.http.post(
                url,
                data=envelope.encode(),
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "undelete"},
                timeout=self.client.timeout,
            )
            fault = soap_fault_of(response)
            if fault is not None:
                code, text = fault
                if code == "INVALID_SESSION_ID":
                    raise SalesforceExpiredSession(url, response.status_code, "", response.content)
                if code == "REQUEST_LIMIT_EXCEEDED" and not _concurrency_limit(text):
                    raise ApiLimitExceeded("the org's daily API request limit is exceeded (REQUEST_LIMIT_EXCEEDED)")
                raise SalesforceError(response.status_code, code, text, soap=True)
            if response.status_code >= 400:
                code, message = error_of(response)
                raise SalesforceError(response.status_code, code, message)
            root = ET.fromstring(response.content)
            results: list[WriteResult] = []
            for r in root.iter():
                if _local(r.tag) != "result":
                    continue
                values = {_local(c.tag): c for c in r}
                err = values.get("errors")
                code = message = ""
                if err is not None:
                    parts = {_local(c.tag): (c.text or "") for c in err}
                    code, message = parts.get("statusCode", ""), parts.get("message", "")
                success = (values["success"].text or "").lower() == "true" if "success" in values else False
                rid = values["id"].text if "id" in values else None
                results.append(WriteResult(id=rid or None, success=success, code=code, message=message))
            if len(results) != len(ids):
                raise SalesforceError(
                    response.status_code, "BAD_ANSWER", f"undelete of {len(ids)}: {len(results)} results"
                )
            return results

        self.client.check_budget(self.reserve_percent)
        results = self.client.call(post, reserve_percent=self.reserve_percent)
        self._wrote()
        return results

    # ------------------------------------------------------------ Bulk API 2.0 ingest
    def bulk_ingest(
        self, object_name: str, operation: str, records: list[dict[str, Any]], *, external_id: str = ""
    ) -> list[WriteResult]:
        """insert / update / upsert through one Bulk API 2.0 ingest job: create, upload the CSV, UploadComplete,
        poll, then its successful, failed and unprocessed results, matched back to `records` by their echoed
        columns. Results in the order of `records`."""
        return self.bulk_start(object_name, operation, records, external_id=external_id)()

    def bulk_start(
        self, object_name: str, operation: str, records: list[dict[str, Any]], *, external_id: str = ""
    ) -> Callable[[], list[WriteResult]]:
        """`bulk_ingest` in two steps: the job created, its CSV uploaded and closed here (the org at work on it
        once this returns); the function returned polls until it ends and reads its results (the caller does
        other work in between, such as sending the next job)."""
        if not records:
            return lambda: []
        header = list(dict.fromkeys(k for r in records for k in r))
        null = "#N/A" if operation != "insert" else ""
        raw = io.BytesIO()
        buffer = io.TextIOWrapper(raw, encoding="utf-8", newline="", write_through=True)
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        sent: list[int] = []

        def cells(r: dict[str, Any]) -> list[str]:
            # text as it is, anything else as csv_cell writes it
            return [v if type(v) is str else csv_cell(v, null=null) for v in map(r.get, header)]

        for r in records:
            row = cells(r)
            writer.writerow(row)
            sent.append(hash(_SEP.join(row)))
        buffer.flush()
        buffer.detach()  # raw stays open
        data = raw.getvalue()  # bytes (a retry of the PUT sends them again whole)
        raw.close()
        # the rows found by their cells are read again from the upload (the records may be let go meanwhile)
        match = _RowMatch(sent, lambda: _uploaded_rows(data))
        count = len(records)
        spec: dict[str, Any] = {
            "object": object_name,
            "operation": operation,
            "contentType": "CSV",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }
        if external_id:
            spec["externalIdFieldName"] = external_id
        self.client.check_budget(self.reserve_percent)
        created = self.client.request("POST", f"{self.base}/jobs/ingest", json=spec)
        _raise_for(created)
        job_id = str(created.json()["id"])
        self._wrote()
        path = f"{self.base}/jobs/ingest/{job_id}"
        upload = self.client.request("PUT", f"{path}/batches", data=data, headers={"Content-Type": "text/csv"})
        _raise_for(upload)
        self._wrote()
        close = self.client.request("PATCH", path, json={"state": "UploadComplete"})
        self._wrote()
        closed = time.monotonic()  # the org at work on it from now
        info: dict[str, Any] = {}
        if close.status_code >= 400:
            state = str(self.reader._get(path).json().get("state", ""))
            if state in ("Open", "Aborted"):
                _raise_for(close)
        else:
            info = dict(close.json())  # the job's info: already complete when the org processed it at once
        return lambda: self._ingest_end(path, info, count, operation, match, closed)

    def _ingest_end(
        self, path: str, info: dict[str, Any], count: int, operation: str, match: _RowMatch, closed: float
    ) -> list[WriteResult]:
        """The rest of `bulk_start`: the job of `count` records waited for, its results in the records' order."""
        if str(info.get("state", "")) not in ("JobComplete", "Failed", "Aborted"):
            info = self._ingest_wait(path, count, operation, closed)
        results: list[WriteResult | None] = [None] * count
        take = match.take
        ok_rows = self._ingest_results(f"{path}/successfulResults/")
        for row in ok_rows:
            at = take(row[2:])
            if at is not None:
                results[at] = WriteResult(row[0] or None, True, created=row[1].lower() == "true")
        failed = info.get("numberRecordsFailed")
        bad_rows = iter(()) if failed == 0 else self._ingest_results(f"{path}/failedResults/")
        match.restart()
        for row in bad_rows:
            at = take(row[2:])
            if at is not None:
                code, message, fields = parse_bulk_error(row[1])
                results[at] = WriteResult(row[0] or None, False, code, message, fields=fields)
        if any(r is None for r in results):
            rows = self._ingest_results(f"{path}/unprocessedrecords/")
            match.restart()
            for row in rows:
                at = take(row)
                if at is not None:
                    results[at] = WriteResult(None, False, "UNPROCESSED", info.get("errorMessage") or "not processed")
        return [
            r if r is not None else WriteResult(None, False, "NO_RESULT", "the Bulk job gave no result for the record")
            for r in results
        ]

    def _ingest_wait(self, path: str, records: int, operation: str, closed: float) -> dict[str, Any]:
        """Polls until the job ends (a poll is an API call): the first when the job should end at the rate the org
        showed on this writer's jobs of the operation (of any operation before its first one; at first
        FIRST_INGEST_RATE records/s; the rate of a job is its records over the org's totalProcessingTime, or, where
        the org gives none, over the wait, a job found done at its first poll making the next first poll come
        sooner), counted from when it was closed (`closed`, monotonic: the caller may have done other work since);
        the next when the rest should be done at the pace numberRecordsProcessed shows since the poll before (three
        quarters of the rate known, if faster: the job may have waited behind the org's others), or, while it shows
        none, after twice the wait before, at most the job's own expected time; each at least a fifth of the job's
        expected time (no ever shorter polls as the job nears its end) and at most 10 s."""
        known = self._ingest_rate.get(operation) or max(self._ingest_rate.values(), default=FIRST_INGEST_RATE)
        expected = records / known * 1.05 + 0.05
        delay = min(max(0.1, closed + expected - time.monotonic()), 10.0)
        time.sleep(delay)  # the org's processing time, not a wait for our own work
        polls = 0
        last_done, last_at = 0, closed
        while True:
            info = dict(self.reader._get(path).json())
            polls += 1
            state = str(info.get("state", ""))
            waited = time.monotonic() - closed
            if state in ("JobComplete", "Failed", "Aborted"):
                if state == "JobComplete" and records:
                    spent = float(info.get("totalProcessingTime") or 0) / 1000
                    rate = learned_rate(known, records, spent, waited, polls)
                    self._ingest_rate[operation] = min(max(rate, 500.0), 50_000.0)
                return info
            if waited > self.bulk_poll_max_s:
                raise SalesforceError(0, "BULK_TIMEOUT", f"Bulk ingest job still {state} after {waited:.0f} s")
            done = int(info.get("numberRecordsProcessed") or 0)
            now = time.monotonic()
            delay = next_poll_delay(records, done, last_done, now - last_at, expected, known, delay)
            if 0 < done < records:
                last_done, last_at = done, now
            time.sleep(delay)  # polling back-off while Salesforce runs the job

    def _ingest_results(self, path: str) -> Iterator[list[str]]:
        """A result CSV's rows after its header, streamed."""
        response = self.reader._get(path, headers={"Accept": "text/csv"}, stream=True)
        rows = _csv_rows(response)
        next(rows, None)
        return rows


_SEP = "\x1f"


def learned_rate(rate: float, records: int, spent: float, waited: float, polls: int) -> float:
    """The org's ingest pace (records/s) to expect of the next job, from one that completed: its records over the
    org's own time on it (`spent`, totalProcessingTime), or, where the org gives none, over the wait (`waited`,
    from the close to the poll that found it done): faster by half when the first poll found it done (it may have
    ended long before), else as seen, never below four fifths of `rate` at once."""
    if spent > 0:
        return records / spent
    if waited <= 0:
        return rate
    seen = records / waited  # at least this fast: done before the poll
    return max(rate, seen) * 1.5 if polls == 1 else max(seen, rate * 0.8)


def next_poll_delay(
    records: int, done: int, last_done: int, since_last: float, expected: float, known: float, delay: float
) -> float:
    """Seconds to the next poll of an ingest job of `records` whose last poll showed `done` processed (`last_done`
    `since_last` seconds before), expected to take `expected` seconds at the `known` pace, the wait before being
    `delay`: the rest at the pace shown since (three quarters of the known pace, if faster: the job may have
    waited behind the org's others); while it shows none, twice the wait before, at most `expected`; at least a
    fifth of `expected` (no ever shorter polls as it nears its end), 0.1 s and at most 10 s."""
    if 0 < done < records:
        pace = (done - last_done) / max(since_last, 1e-3)
        delay = (records - done) / max(pace, known * 0.75, 1.0) * 1.05 + 0.05
    else:
        delay = min(delay * 2, max(expected, 0.1))
    return min(max(delay, 0.1, expected / 5), 10.0)


class _RowMatch:
    """A Bulk result row matched back to the uploaded row it echoes: each result file lists its rows in the
    order they were uploaded (as sforg does and Salesforce mostly does), so the next row not yet matched is
    tried first, as sent; any other row is found by its cells in the spelling Salesforce may echo them
    (`_row_key`), each uploaded row taken once."""

    def __init__(self, sent: list[int], rows: Callable[[], Iterable[list[str]]]) -> None:
        self.sent = sent  # each uploaded row's hash (its cells joined): a batch is not held twice for the matching
        self.rows = rows  # the uploaded rows' cells again, in order, for the rows found by their cells
        self.taken = bytearray(len(sent))
        self.at = 0
        self.keys: dict[bytes, list[int]] | None = None

    def restart(self) -> None:
        """The next result file: its rows come in upload order again."""
        self.at = 0

    def take(self, cells: list[str]) -> int | None:
        sent, taken, at = self.sent, self.taken, self.at
        while at < len(sent) and taken[at]:
            at += 1
        self.at = at
        if at < len(sent) and sent[at] == hash(_SEP.join(cells)):
            taken[at] = 1
            self.at = at + 1
            return at
        if self.keys is None:
            self.keys = {}
            for index, row in enumerate(self.rows()):
                self.keys.setdefault(_row_key(row), []).append(index)
        indexes = self.keys.get(_row_key(cells))
        while indexes:
            index = indexes.pop(0)
            if not taken[index]:
                taken[index] = 1
                return index
        return None


def _uploaded_rows(data: bytes) -> Iterator[list[str]]:
    """The rows of an uploaded CSV after its header, their cells as they were written."""
    rows = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    next(rows, None)
    return rows


def _cell_key(cell: str) -> str:
    """A cell as Salesforce may echo it back in a result CSV: numbers and booleans in one spelling."""
    text = cell.strip()
    first = text[:1]
    if first and (first.isdigit() or first in "-+."):  # a number perhaps (nothing else starts so)
        try:
            number = float(text)
        except ValueError:
            return text
        return repr(number)
    if len(text) in (4, 5):
        low = text.lower()
        if low in ("true", "false"):
            return low
        if low == "#n/a":
            return ""
    return text


def _row_key(cells: list[str]) -> bytes:
    """A row's cells as a 16-byte digest (a batch of 25,000 rows is not held twice for the matching)."""
    return hashlib.blake2b("\x1f".join(_cell_key(c) for c in cells).encode(), digest_size=16).digest()


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


__all__ = ["OrgWriter", "WriteAnswerLost", "WriteResult"]
