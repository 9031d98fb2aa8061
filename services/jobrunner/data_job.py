"""The data job: one object, a full copy (Bulk or REST) or a window (on SystemModstamp, else LastModifiedDate,
else CreatedDate: domain.cursor_field), then the delete log and the Id reconciliation, in phases a resumed attempt
continues from, and (incremental) the count check; the mark moves only once all of it is stored. Which API reads
the records, and the fallbacks between them, are decided here."""

from __future__ import annotations

import logging
import time
from typing import Any

from services.jobrunner import domain, translate
from services.jobrunner.bulk_read import read_bulk
from services.jobrunner.deletes import count_check, reconcile_ids, store_delete_log
from services.jobrunner.domain import Key, ObjectMarks, Plan
from services.jobrunner.job_run import JobRun
from services.jobrunner.object_read import ObjectRead
from services.jobrunner.ports import MarkStore, SalesforceReads
from services.jobrunner.prefetch import prefetch
from services.jobrunner.rest_read import read_rest, too_wide_for_rest
from services.jobrunner.salesforce import SalesforceError
from services.sfclient import is_transient

log = logging.getLogger("services.jobrunner.jobs")


class DataJob:
    def __init__(self, run: JobRun, reader: SalesforceReads, marks: MarkStore) -> None:
        self.run = run
        self.reader = reader
        self.marks = marks
        self.read: ObjectRead | None = None

    @property
    def warnings(self) -> list[str]:
        return self.read.warnings if self.read is not None else []

    def execute(self) -> str:
        run, spec, data = self.run, self.run.spec, self.run.spec.data
        obj = spec.object_name
        run.begin(obj)
        run.storage.put_schema(run.org, spec.session_id, translate.schema_of(spec))
        o = self.read = ObjectRead.of(run, self.reader)
        if run.seq > 0:  # resumed: what the earlier attempts had to fall back to
            o.warnings = list(run.checkpoint.get("warnings") or [])
        marks = self.marks.marks(spec.policy_id, obj, data.id_from, data.id_to)
        plan = self._plan(marks)
        log.info("data job %s %s: %s (%s)", spec.job_id, obj, plan.mode, plan.reason)
        pos = run.resume_position() or {"phase": "read"}
        if pos == {"phase": "read"}:  # from the window's start: its first reads in one call
            o.reader = prefetch(o, plan)
        # a full read from its start (no end to its window, queryAll as the reconciliation's) reads every Id the org
        # has: the reconciliation after it takes them instead of asking the org for its Ids again
        whole = pos == {"phase": "read"} and plan.mode == "full" and plan.reconcile
        if pos.get("phase") == "read":
            self._read(o, plan, pos, ids=whole)
            pos = {"phase": "deleted"}
        if pos.get("phase") == "deleted":
            if plan.deleted_since is not None:
                store_delete_log(o, plan)
            pos = {"phase": "reconcile"}
        done = []
        if pos.get("phase") == "reconcile" and plan.reconcile:
            done.append(reconcile_ids(o, org_ids=o.seen if whole else None))
        # an incremental job ends with the count check: one COUNT() against storage's live count, the Id
        # reconciliation when the org has fewer (a hard delete), a warning when they still differ
        done += count_check(o, plan, reconciled=plan.reconcile)
        run.save_state(phase="done")
        org_now = run.client.org_now()
        self.marks.save_marks(
            spec.policy_id,
            obj,
            data.id_from,
            data.id_to,
            ObjectMarks(
                mark=domain.advance_mark(marks.mark, plan),
                last_full=org_now if plan.mode == "full" else marks.last_full,
                last_reconcile=org_now if plan.reconcile or plan.mode == "full" else marks.last_reconcile,
                last_success=org_now,
            ),
        )
        elapsed = time.monotonic() - run.started
        log.info(
            "data job %s %s: %d records in %.1f s; storage took %.1f s, the reader waited %.1f s for it",
            spec.job_id,
            obj,
            run.received,
            elapsed,
            run.storage_s,
            run.waited_s,
        )
        return "; ".join([f"{plan.mode} ({plan.reason})", *done, *(f"warning: {w}" for w in o.warnings)])

    def _plan(self, marks: ObjectMarks) -> Plan:
        run, data = self.run, self.run.spec.data
        saved = run.checkpoint.get("plan")
        if saved and run.seq > 0:
            # a resumed attempt keeps its window: its resume positions belong to it
            return Plan(
                saved["mode"],
                saved["reason"],
                domain.parse_sf_datetime(saved["start"]) if saved.get("start") else None,
                domain.parse_sf_datetime(saved["end"]),
                saved["reconcile"],
                domain.parse_sf_datetime(saved["deleted_since"]) if saved.get("deleted_since") else None,
                saved.get("cursor", "SystemModstamp"),
            )
        every = data.reconcile_every.ToTimedelta() if data.HasField("reconcile_every") else None
        backfill = any(f.backfill for f in data.fields)  # a new field: every record is read for it
        plan = domain.plan_data_job(
            marks,
            run.client.org_now(),
            full=data.full or backfill,
            cursor=domain.cursor_field([f.name for f in data.fields] + ["SystemModstamp"] * data.has_system_modstamp),
            replicateable=data.replicateable,
            reconcile_every=every or None,
            overlap=run.tuning.overlap,
            settle=run.tuning.settle,
        )
        run.save_state(
            plan={
                "mode": plan.mode,
                "reason": plan.reason,
                "start": domain.soql_datetime(plan.start) if plan.start else None,
                "end": domain.soql_datetime(plan.end),
                "reconcile": plan.reconcile,
                "deleted_since": domain.soql_datetime(plan.deleted_since) if plan.deleted_since else None,
                "cursor": plan.cursor,
            }
        )
        return plan

    # ------------------------------------------------------------ which API reads the records
    def _read(self, o: ObjectRead, plan: Plan, pos: dict[str, Any], *, ids: bool = False) -> None:
        """The plan's records; with `ids`, the Ids read kept too (o.seen)."""
        o.track_seen = plan.deleted_since is not None or ids
        if pos.get("api") == "bulk":
            self._bulk_else_rest(o, plan, pos)
            return
        if too_wide_for_rest(o, plan):
            if not o.data.bulk_supported:
                raise SalesforceError(
                    0,
                    "TOO_WIDE",
                    f"{o.obj}: its {len(o.selection.rest_fields)} fields exceed a REST query's length and"
                    " Bulk API 2.0 cannot serve the object",
                )
            log.info("%s is too wide for a REST query line: Bulk only", o.obj)
            read_bulk(o, plan, {})
            return
        after = Key(pos["key"][0], pos["key"][1]) if pos.get("key") else None
        if pos.get("api") == "rest" or not o.data.bulk_supported:
            self._rest_else_bulk(o, plan, after, probe=False)
            return
        if not self._rest_else_bulk(o, plan, after, probe=True):
            self._bulk_else_rest(o, plan, {})

    def _rest_else_bulk(self, o: ObjectRead, plan: Plan, after: Key | None, *, probe: bool) -> bool:
        """REST, and when Salesforce keeps timing its query out (QUERY_TIMEOUT still, after OrgClient's retries: an
        ordered query over a large table), the same read through Bulk, which runs it unordered and in chunks;
        what was stored already is unchanged to storage."""
        try:
            return read_rest(o, plan, after, probe=probe)
        except SalesforceError as exc:
            if exc.code != "QUERY_TIMEOUT" or not o.data.bulk_supported:
                raise
        log.warning("REST queries of %s keep timing out; reading it through Bulk", o.obj)
        o.warn(f"REST queries of {o.obj} kept timing out (QUERY_TIMEOUT): read through Bulk")
        self.run.wait_stored()
        read_bulk(o, plan, {})
        return True

    def _bulk_else_rest(self, o: ObjectRead, plan: Plan, pos: dict[str, Any]) -> None:
        """Bulk, and when Salesforce cannot run the Bulk job, the same read through REST from the start (what
        was stored already is unchanged to storage): a refused Bulk job never means a skipped object."""
        try:
            read_bulk(o, plan, pos)
        except SalesforceError as exc:
            if too_wide_for_rest(o, plan) or is_transient(exc):
                raise  # transient: still failing after OrgClient's retries, the job is handed back and resumes
            log.warning("Bulk read of %s failed (%s); reading it through REST", o.obj, exc.code)
            o.warn(f"Bulk API unavailable for {o.obj} ({exc.code or exc.status}): read through REST")
            self.run.wait_stored()
            read_rest(o, plan, None, probe=False)
