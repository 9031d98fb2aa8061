"""Queries: plans, rowid sets, REST cursors, record counts and the replication (updated/deleted) calls."""

from __future__ import annotations

import secrets
from array import array
from collections.abc import Sequence
from typing import Any

from sforg.clock import parse_datetime, stamp
from sforg.ids import make_id
from sforg.org.base import DAY, RECYCLE_BIN_DAYS, REPLICATION_DAYS, Cursor, OrgBase, OrgError
from sforg.query import Plan, count_matches, execute, plan_query
from sforg.store import ascending_run


class Queries(OrgBase):
    # ------------------------------------------------------------ queries
    def plan(self, soql_text: str, include_deleted: bool, bulk: bool = False) -> Plan:
        return plan_query(soql_text, self.context(), include_deleted, bulk)

    def run(self, plan_: Plan) -> Sequence[int]:
        # Cursors and Bulk jobs keep their rowids: one range when they are a run (a whole object, or a slice of one
        # by Id when Ids follow rowids), which pages are rendered from inside SQLite; otherwise 8 bytes each in an
        # array, not a list of int objects.
        rowids = execute(plan_, self.src, self.context())
        if isinstance(rowids, range) or not rowids:
            return rowids or range(0)
        if ascending_run(rowids):
            return range(rowids[0], rowids[-1] + 1)
        return array("q", rowids)

    def count(self, plan_: Plan) -> int:
        """A COUNT() query's totalSize."""
        return count_matches(plan_, self.src, self.context())

    def new_cursor(self, plan_: Plan, rowids: Sequence[int], version: str, batch: int) -> Cursor:
        cid = make_id("01g", secrets.randbelow(62**9), pod="Dx")
        cur = Cursor(cid, plan_, rowids, version, batch, self.now())
        with self.lock:
            self.cursors[cid] = cur
            # Older cursors are dropped first when many are open, like a server with bounded memory.
            while len(self.cursors) > 64:
                oldest = min(self.cursors.values(), key=lambda c: c.last_used)
                del self.cursors[oldest.id]
        return cur

    def get_cursor(self, cid: str) -> Cursor | None:
        cur = self.cursors.get(cid)
        if cur is None:
            return None
        if self.now() - cur.last_used > self.settings["locator_ttl"]:
            self.cursors.pop(cid, None)
            return None
        cur.last_used = self.now()
        return cur

    def record_count(self, obj: str) -> int:
        o = self.obj(obj)
        return self.store.count(o.name, 'WHERE "IsDeleted"=0' if o.field("IsDeleted") else "")

    def replication_window(self, start_text: str, end_text: str) -> tuple[float, float]:
        try:
            start = parse_datetime(start_text).timestamp()
            end = parse_datetime(end_text).timestamp()
        except ValueError as exc:
            raise OrgError(400, "INVALID_REPLICATION_DATE", "startDate or endDate is not a valid date") from exc
        # Salesforce works to the minute: seconds are truncated.
        start, end = start - start % 60, end - end % 60
        now = self.now()
        if end <= start:
            raise OrgError(400, "INVALID_REPLICATION_DATE", "endDate must chronologically follow the startDate")
        if start < now - REPLICATION_DAYS * DAY:
            raise OrgError(400, "INVALID_REPLICATION_DATE", "startDate cannot be more than 30 days ago")
        return start, min(end, now - now % 60)

    def updated(self, obj: str, start_text: str, end_text: str) -> dict[str, Any]:
        o = self.obj(obj)
        start, end = self.replication_window(start_text, end_text)
        ids = [
            r[0]
            for r in self.store.scan(
                o.name,
                ["Id"],
                'WHERE "SystemModstamp" >= ? AND "SystemModstamp" < ?'
                + (' AND "IsDeleted"=0' if o.field("IsDeleted") else ""),
                (stamp(start), stamp(end)),
                order='"SystemModstamp"',
            )
        ]
        if len(ids) > 600000:
            raise OrgError(400, "EXCEEDED_ID_LIMIT", "too many ids")
        return {"ids": ids, "latestDateCovered": self._latest_covered(end)}

    def _latest_covered(self, end: float) -> str:
        # A pending (late-visible) commit holds latestDateCovered at the start of that transaction.
        row = self.store.conn().execute("SELECT MIN(json_extract(payload, '$.SystemModstamp')) FROM pending").fetchone()
        covered = stamp(end)
        if row and row[0] and row[0] < covered:
            covered = row[0]
        return covered[:-1] + "+0000"

    def deleted(self, obj: str, start_text: str, end_text: str) -> dict[str, Any]:
        o = self.obj(obj)
        start, end = self.replication_window(start_text, end_text)
        self.maintain()  # as every request: due work once a second of real time, at once when the clock moved
        recs = []
        if o.field("IsDeleted") and not o.hard_delete:
            recs = [
                {"id": rid, "deletedDate": at[:-1] + "+0000"}
                for rid, at in self.store.scan(
                    o.name,
                    ["Id", "_deleted_at"],
                    "WHERE _deleted_at >= ? AND _deleted_at < ?",
                    (stamp(start), stamp(end)),
                    order="_deleted_at",
                )
            ]
        earliest = stamp(max(self.now() - RECYCLE_BIN_DAYS * DAY, self.anchor - RECYCLE_BIN_DAYS * DAY))
        row = (
            self.store.conn()
            .execute("SELECT MAX(deleted_at) FROM tombstones WHERE object=? AND kind='purged'", (o.name,))
            .fetchone()
        )
        if row and row[0] and row[0] > earliest:
            earliest = row[0]
        return {
            "deletedRecords": recs,
            "earliestDateAvailable": earliest[:-1] + "+0000",
            "latestDateCovered": stamp(end)[:-1] + "+0000",
        }

    def expire_locators(self) -> dict[str, Any]:
        n = len(self.cursors)
        self.cursors.clear()
        return {"expired": n}
