"""Reading an object through Bulk API 2.0 queryAll, streamed page by page: its records for storage, or its
Ids for the Id reconciliation. A resume position is (job, page locator, rows of that page already stored):
locators stay valid while the job exists, and a job that disappeared is queried again."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from services.canonical import CanonicalParts
from services.jobrunner import domain
from services.jobrunner.domain import CountMismatch, Plan, check_counts
from services.jobrunner.object_read import ObjectRead
from services.jobrunner.salesforce import BulkJob, BulkJobGone, SalesforceError
from services.platform.errors import InvalidArgument

log = logging.getLogger("services.jobrunner.jobs")

# a Bulk CSV row and its position in the page -> (what goes to storage, its size, its Id)
RowEncoder = Callable[[list[str], int], tuple[CanonicalParts, int, str]]


def completed_job(o: ObjectRead, job_id: str, failed: str = "") -> BulkJob:
    """The Bulk job once Salesforce has run it; one that failed or was aborted is a SalesforceError (its
    message Salesforce's, else `failed`, else its state)."""
    job = o.reader.bulk_wait(job_id, should_stop=o.run.control.check)
    if job.state != "JobComplete":
        raise SalesforceError(0, "BULK_" + job.state.upper(), job.error or failed or f"Bulk job {job.state}")
    return job


def read_bulk(o: ObjectRead, plan: Plan, pos: dict[str, Any]) -> None:
    """The plan's records, from `pos` (a resume position, or {} for a new Bulk job)."""
    job_id = pos.get("job", "")
    locator = pos.get("locator", "")
    skip = int(pos.get("skip", 0))
    received = int(pos.get("received", 0))
    soql = o.soql(o.selection.bulk_fields, plan)
    for _attempt in range(3):
        try:
            if not job_id:
                job_id = o.reader.bulk_create(soql, query_all=o.query_all)
                locator, skip, received = "", 0, 0
                o.run.save_state(bulk_job=job_id)
            job = completed_job(o, job_id)
            _pages(o, job_id, job.records, locator, skip, received)
            return
        except BulkJobGone:
            log.info("Bulk job %s of %s is gone; querying again", job_id, o.obj)
            job_id, locator, skip, received = "", "", 0, 0
    raise SalesforceError(0, "BULK_GONE", f"the Bulk results of {o.obj} kept disappearing")


def _pages(o: ObjectRead, job_id: str, total: int, locator: str, skip: int, received: int) -> None:
    tuning = o.run.tuning
    while True:
        o.run.control.check()
        base = received - skip  # rows of the pages before this one
        count, nxt, encode, rows = _open_page(o, job_id, locator, skip)
        buffer: list[Any] = []
        size = 0
        page_rows = skip
        for row in rows:
            encoded, length, rid = encode(row, page_rows)
            buffer.append(encoded)
            size += length
            if o.track_seen:
                o.seen.add(rid)
            page_rows += 1
            if len(buffer) >= tuning.chunk_records or size >= tuning.chunk_bytes:
                o.run.count_read(len(buffer))
                _flush(o, buffer, job_id, locator, page_rows, base + page_rows)
                buffer, size = [], 0
        if page_rows != count:
            raise CountMismatch(f"Bulk page of {o.obj}: Salesforce reported {count} records, {page_rows} were received")
        received = base + page_rows
        if buffer:
            # the page's tail: after it, reading continues at the next page
            o.run.count_read(len(buffer))
            _flush(o, buffer, job_id, nxt, 0, received, page_done=True)
        if not nxt:
            break
        locator, skip = nxt, 0
    check_counts(f"Bulk job of {o.obj}", total, received)


def _open_page(o: ObjectRead, job_id: str, locator: str, skip: int) -> tuple[int, str, RowEncoder, Iterator[list[str]]]:
    count, nxt, rows = o.reader.bulk_page(job_id, locator, o.run.tuning.bulk_page)
    header = next(rows, None)
    encode = row_encoder(o, header or [])
    for _ in range(skip):
        next(rows, None)
    return count, nxt, encode, rows


def row_encoder(o: ObjectRead, header: list[str]) -> RowEncoder:
    """How a CSV row of a page with this header goes to storage: (its canonical parts, their size, its Id). Rows
    go straight from the cells to their parts (compile_rows); a row that reading does not take (or finds wrong:
    the record reading then says what is wrong) through its record."""
    decode = domain.csv_decoder(header, o.selection, o.drop)
    compiled = o.canonicalizer.compile_rows(
        header, domain.csv_typing(header, o.selection), o.selection.compounds, o.drop
    )

    def encode(row: list[str], position: int) -> tuple[CanonicalParts, int, str]:
        try:
            p = compiled(row, position) if compiled is not None else None
        except InvalidArgument:
            p = None
        if p is not None:
            return p, len(p.values) + len(p.other_values), p.record_id
        rec = decode(row)
        encoded, length = o.encode(rec, position)
        return encoded, length, str(rec.get("Id"))

    return encode


def _flush(
    o: ObjectRead, buffer: list[Any], job_id: str, locator: str, skip: int, received: int, page_done: bool = False
) -> None:
    pos = {"phase": "read", "api": "bulk", "job": job_id, "locator": locator, "skip": skip, "received": received}
    if page_done and not locator:
        pos = {"phase": "deleted"}
    o.run.put_records(o.obj, buffer, pos)


def org_ids_bulk(o: ObjectRead) -> set[str]:
    """Every Id of the object in the org (queryAll: the recycle bin counts as present), from one Bulk job."""
    org_ids: set[str] = set()
    job_id = o.reader.bulk_create(o.soql(["Id"]), query_all=o.query_all)
    job = completed_job(o, job_id, "Id reconciliation query failed")
    locator = ""
    while True:
        o.run.control.check()
        count, nxt, rows = o.reader.bulk_page(job_id, locator, o.run.tuning.bulk_page)
        header = next(rows, None) or []
        column = header.index("Id") if "Id" in header else -1
        n = 0
        for row in rows:  # an empty page may come without its header
            if column < 0 or len(row) <= column or not row[column]:
                # never taken for a record the org no longer has: the job fails instead
                raise CountMismatch(f"a row of the Id page of {o.obj} has no Id")
            org_ids.add(row[column])
            n += 1
        check_counts(f"Id page of {o.obj}", count, n)
        if not nxt:
            break
        locator = nxt
    check_counts(f"Id reconciliation of {o.obj}", job.records, len(org_ids))
    return org_ids
