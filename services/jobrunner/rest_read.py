"""Reading an object through REST queryAll in key order, resumable after any stored record: its records for
storage, or its Ids for the Id reconciliation. An expired query locator re-issues the query after the last key
read, so each query makes progress even when every locator expires."""

from __future__ import annotations

import logging
from typing import Any

from services.jobrunner.domain import Key, Plan, build_soql, check_counts, key_of, rest_fits
from services.jobrunner.object_read import ObjectRead
from services.jobrunner.salesforce import LocatorExpired

log = logging.getLogger("services.jobrunner.jobs")


def too_wide_for_rest(o: ObjectRead, plan: Plan) -> bool:
    """Whether the REST query (URL-encoded, with the longest keyset condition) passes 16 KB request lines."""
    longest = build_soql(
        o.obj,
        o.selection.rest_fields,
        start=plan.start,
        end=plan.end,
        id_from=o.data.id_from,
        id_to=o.data.id_to,
        after=Key("2000-01-01T00:00:00.000Z", "0" * 18),
        ordered="modstamp",
        cursor=plan.cursor,
    )
    return not rest_fits(longest)


def read_rest(o: ObjectRead, plan: Plan, after: Key | None, *, probe: bool) -> bool:
    """The plan's records in key order, in chunks, resumable after any stored record. With `probe`, gives up
    after the first page (returning False) when the result is large enough for Bulk."""
    tuning = o.run.tuning
    ordered = "modstamp" if plan.mode == "incremental" else "id"
    last: Key | None = after
    while True:
        soql = o.soql(o.selection.rest_fields, plan, after=last, ordered=ordered)
        buffer: list[Any] = []
        size = 0
        buffer_key: Key | None = None
        try:
            page = o.reader.query_page(soql, query_all=o.query_all, batch_size=tuning.rest_batch)
            if probe and page.total_size > tuning.bulk_threshold and o.data.bulk_supported:
                return False
            probe = False
            expected, got = page.total_size, 0
            while True:
                o.run.control.check()
                for rec in page.records:
                    encoded, length = o.encode(rec, got)
                    buffer.append(encoded)
                    size += length
                    buffer_key = key_of(rec, ordered, plan.cursor)
                    if o.track_seen:
                        o.seen.add(buffer_key.record_id)
                    got += 1
                    if len(buffer) >= tuning.chunk_records or size >= tuning.chunk_bytes:
                        _flush(o, buffer, buffer_key)
                        buffer, size = [], 0
                if not page.next_url:
                    break
                page = o.reader.query_more(page.next_url, batch_size=tuning.rest_batch)
            check_counts(f"REST query of {o.obj}", expected, got)
            if buffer and buffer_key is not None:
                _flush(o, buffer, buffer_key)
            return True
        except LocatorExpired:
            # What was read is contiguous in key order: store it, then re-issue the query after it.
            log.info("query locator expired for %s; continuing after the last record read", o.obj)
            if buffer and buffer_key is not None:
                _flush(o, buffer, buffer_key)
            o.run.wait_stored()
            last = o.last_stored_key() or after


def _flush(o: ObjectRead, buffer: list[Any], last: Key) -> None:
    o.run.count_read(len(buffer))
    o.run.put_records(o.obj, buffer, {"phase": "read", "api": "rest", "key": [last.modstamp, last.record_id]})


def org_ids_rest(o: ObjectRead) -> set[str]:
    """Every Id of the object in the org (queryAll: the recycle bin counts as present), in Id order."""
    org_ids: set[str] = set()
    last: Key | None = None
    while True:
        soql = o.soql(["Id"], None, after=last, ordered="id")
        try:
            page = o.reader.query_page(soql, query_all=o.query_all, batch_size=2000)
            expected, got = page.total_size, 0
            while True:
                o.run.control.check()
                for record in page.records:
                    rid = str(record["Id"])
                    org_ids.add(rid)
                    last = Key(None, rid)
                    got += 1
                if not page.next_url:
                    break
                page = o.reader.query_more(page.next_url)
            check_counts(f"Id reconciliation of {o.obj}", expected, got)
            return org_ids
        except LocatorExpired:
            log.info("query locator expired for the Ids of %s; continuing after the last Id read", o.obj)
