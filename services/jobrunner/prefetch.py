"""An incremental data job's three first reads in one API call: the window's first page (REST), the delete log of
the window and the count check's COUNT() go to Salesforce as one /composite request, which "counts as a single
call toward your API limits". An object with nothing changed costs one call a session instead of three.

The answers are handed out by `Prefetched`, a reader that answers exactly those reads once each and passes every
other read (and any read it does not hold: a subrequest the org refused, a page with more behind it) to the
reader it wraps: the job's code is unchanged, and whatever the composite request could not answer is asked again
alone, where its errors are handled as before."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, cast

from services.jobrunner.deletes import count_soql, delete_log_end, has_created_date
from services.jobrunner.domain import Plan
from services.jobrunner.object_read import ObjectRead
from services.jobrunner.ports import SalesforceReads
from services.jobrunner.rest_read import too_wide_for_rest
from services.jobrunner.salesforce import RestPage, SalesforceError
from services.sfclient import is_transient

log = logging.getLogger("services.jobrunner.jobs")


class Prefetched:
    """A reader answering some reads from one composite answer (each once), every other through `reader`."""

    def __init__(
        self,
        reader: SalesforceReads,
        pages: dict[tuple[str, bool], RestPage],
        deleted: dict[tuple[str, dt.datetime, dt.datetime], dict[str, Any]],
    ) -> None:
        self._reader = reader
        self._pages = pages
        self._deleted = deleted

    def query_page(self, soql: str, *, query_all: bool = True, batch_size: int = 2000) -> RestPage:
        page = self._pages.pop((soql, query_all), None)
        if page is not None:
            return page
        return self._reader.query_page(soql, query_all=query_all, batch_size=batch_size)

    def deleted(self, object_name: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        body = self._deleted.pop((object_name, start, end), None)
        if body is not None:
            return body
        return self._reader.deleted(object_name, start, end)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def prefetch(o: ObjectRead, plan: Plan) -> SalesforceReads:
    """The reader an incremental job reads with: its first reads answered by one composite call when the job
    starts from the beginning of its window through REST; else the job's own reader."""
    reader = o.reader
    if plan.mode != "incremental" or too_wide_for_rest(o, plan):
        return reader
    window = o.soql(o.selection.rest_fields, plan, after=None, ordered="modstamp")
    # the window's first page and the count check's COUNT() (of the whole object, an Id-range job's too)
    queries = [(window, o.query_all), (count_soql(o.obj, plan.end if has_created_date(o) else None), False)]
    deleted = (o.obj, plan.deleted_since, delete_log_end(plan)) if plan.deleted_since is not None else None
    try:
        pages, log_body = reader.reads_at_once(queries, deleted)
    except SalesforceError as exc:
        if is_transient(exc):
            raise  # still failing after OrgClient's retries: the job is handed back, as any read's would be
        log.info("composite reads of %s refused (%s): each asked alone", o.obj, exc.code or exc.status)
        return reader
    held = {
        key: page
        for key, page in zip(queries, pages, strict=False)
        if page is not None and page.next_url is None  # whole: what the query alone would give, at any page size
    }
    logs = {deleted: log_body} if deleted is not None and log_body is not None else {}
    return cast(SalesforceReads, Prefetched(reader, held, logs))
