"""Deletes a data job stores besides the records it reads: those the delete log names for the window (soft),
and those the Id reconciliation finds storage holds and the org no longer has (hard); and the count check at the
end of every incremental job, which runs the Id reconciliation when the org has fewer records than the backup
(a hard delete leaves no trace in the window's read nor in the delete log)."""

from __future__ import annotations

import datetime as dt
import logging

from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner import domain
from services.jobrunner.bulk_read import org_ids_bulk
from services.jobrunner.domain import Plan, soql_datetime
from services.jobrunner.object_read import ObjectRead
from services.jobrunner.rest_read import org_ids_rest
from services.jobrunner.salesforce import SalesforceError
from services.sfclient import is_transient

log = logging.getLogger("services.jobrunner.jobs")


def delete_log_end(plan: Plan) -> dt.datetime:
    """The end of the delete log's window: the plan's, at least two minutes after its start (getDeleted refuses
    a shorter one)."""
    assert plan.deleted_since is not None
    return max(plan.end, plan.deleted_since + dt.timedelta(minutes=2))


def store_delete_log(o: ObjectRead, plan: Plan) -> None:
    """Records the delete log has for the window and the window's read did not return (deleted, then purged
    from the recycle bin): soft-deleted now, hard-deleted by the next reconciliation. Records the read did
    return are already stored in the state queryAll gave (deleted, or undeleted since)."""
    assert plan.deleted_since is not None
    try:
        body = o.reader.deleted(o.obj, plan.deleted_since, delete_log_end(plan))
    except SalesforceError as exc:
        if is_transient(exc):
            raise  # still failing after OrgClient's retries: the job is handed back, resumes at this phase
        log.warning("getDeleted for %s unavailable (%s); the next reconciliation covers it", o.obj, exc.code)
        o.warn(
            f"the delete log of {o.obj} is unavailable ({exc.code or exc.status}): records deleted and"
            " purged in this window are caught by the next Id reconciliation"
        )
        return
    ids = [str(r["id"]) for r in body.get("deletedRecords", []) if r.get("id")]
    ids = [i for i in ids if o.in_range(i) and i not in o.seen]
    for batch in domain.batched(ids, o.run.tuning.chunk_records):
        o.run.mark_deleted(o.obj, list(batch), spb.DELETED_STATE_SOFT, {"phase": "reconcile"})


# Salesforce's answer to a Bulk job on an object the Bulk API does not support (UndecidedEventRelation, ...)
NOT_A_BULK_OBJECT = "INVALIDENTITY"


def reconcile_ids(o: ObjectRead, org_ids: set[str] | None = None) -> str:
    """Every Id in the org (queryAll, so the recycle bin counts as present) against every Id storage holds
    live or soft-deleted: the ones storage holds and the org no longer has are hard-deleted. Records the
    org has and storage lacks were just read by the full copy this runs after. The org's Ids are `org_ids` when
    given (the Ids that full copy read, whole, at no call), else they come from a Bulk job, or through REST when
    the object or the org cannot have one (Bulk API disabled, the job refused or failed: a warning in the job's
    result)."""
    o.run.wait_stored()  # storage's view must include every chunk of the read
    if org_ids is None and o.data.bulk_supported:
        try:
            org_ids = org_ids_bulk(o)
        except SalesforceError as exc:
            if is_transient(exc):
                raise  # still failing after OrgClient's retries: the job is handed back
            if exc.code == NOT_A_BULK_OBJECT:
                # an object the Bulk API does not take (a documented limit, not a fault): REST, every time, quietly
                log.info("%s is not supported by the Bulk API; its Ids read through REST", o.obj)
            else:
                log.warning("Bulk Id query of %s failed (%s); reading the Ids through REST", o.obj, exc.code)
                o.warn(
                    f"Bulk API unavailable for the Id reconciliation of {o.obj} ({exc.code or exc.status}):"
                    " Ids read through REST"
                )
    if org_ids is None:
        org_ids = org_ids_rest(o)
    gone = [rid for rid, _soft in o.run.storage.stored_ids(o.run.org, o.obj) if o.in_range(rid) and rid not in org_ids]
    for batch in domain.batched(gone, o.run.tuning.chunk_records):
        o.run.mark_deleted(o.obj, list(batch), spb.DELETED_STATE_HARD, {"phase": "reconcile"})
    if gone:
        log.info("reconciliation of %s: %d records hard-deleted in the org", o.obj, len(gone))
    return f"reconciled {len(org_ids)} Ids, {len(gone)} hard-deleted"


# ---------------------------------------------------------------- the count check


def count_soql(object_name: str, created_by: dt.datetime | None) -> str:
    """One `SELECT COUNT()` of the object's records, those created by the window's end when the object has a
    CreatedDate: a record created while the job ran is neither in the window nor in the count."""
    text = f"SELECT COUNT() FROM {object_name}"
    if created_by is not None:
        text += f" WHERE CreatedDate <= {soql_datetime(created_by)}"
    return text


def count_disagreement(object_name: str, org: int, backup: int, *, reconciled: bool) -> str:
    """What a count check that still disagrees says ('' when the counts agree): the object, both counts, and why
    (the org counts live records, not the recycle bin, as storage's CountLive does)."""
    if org == backup:
        return ""
    head = f"count check of {object_name}: {org} records in the org, {backup} in the backup"
    if org > backup:
        return (
            f"{head}: the backup lacks {org - backup} records the org has (created before the window's end and"
            " changed while the backup ran, or missed): the next session reads them"
        )
    after = " after the Id reconciliation" if reconciled else ""
    return (
        f"{head}{after}: {backup - org} records live in the backup are not in the org's count (deleted while the"
        " backup ran, into the recycle bin): the next session's delete log stores them"
    )


def count_check(o: ObjectRead, plan: Plan, *, reconciled: bool) -> list[str]:
    """At the end of an incremental job, once its changes and deletes are stored: the org's count of the object
    (one API call) against storage's CountLive. Fewer in the org than in the backup is the sign of a hard delete:
    the Id reconciliation runs now (unless this job already ran it), then both are counted again. Still
    different: a warning naming the object, both counts and why. More in the org is never a hard delete: the
    reconciliation cannot explain it, the warning says so. An Id-range job (a split object) counts the whole
    object too (CountLive counts a whole object), see range_count_check. Returns what the job's result says."""
    if plan.mode != "incremental":
        return []
    created_by = plan.end if has_created_date(o) else None
    org = _org_count_or_note(o, created_by)
    if isinstance(org, str):
        return [org]
    backup = stored_count(o)
    if org == backup:
        return [f"count check: {org} records in the org and the backup"]
    if o.data.id_from or o.data.id_to:
        return range_count_check(o, org, backup, reconciled=reconciled)
    done = []
    if org < backup and not reconciled:
        log.info("count check of %s: %d in the org, %d in the backup: reconciling Ids", o.obj, org, backup)
        done.append(reconcile_ids(o))
        reconciled = True
        again = _org_count_or_note(o, created_by)
        if isinstance(again, str):
            return [*done, again]
        org, backup = again, stored_count(o)
    problem = count_disagreement(o.obj, org, backup, reconciled=reconciled)
    if problem:
        o.warn(problem)
        return [*done, "count check: counts differ"]
    return [*done, f"count check: {org} records in the org and the backup after the Id reconciliation"]


def range_count_check(o: ObjectRead, org: int, backup: int, *, reconciled: bool) -> list[str]:
    """The count check of an Id-range job, whose counts are the whole object's (storage counts no range): fewer
    in the org is the sign of a hard delete somewhere in the object, so each range's job reconciles its own range
    (the Id reconciliation judges only Ids inside it: never another range's records), and the range that holds
    the hard delete marks it. Whatever still differs is not judged here: the object's other ranges' jobs may be
    storing their windows at this moment (a note in the result, no warning). Other ranges reconcile needlessly
    when the difference is another range's (their cost, never a wrong delete)."""
    head = f"count check of the whole object: {org} records in the org, {backup} in the backup"
    if org < backup and not reconciled:
        log.info("count check of %s: %d in the org, %d in the backup: reconciling its Id range", o.obj, org, backup)
        return [reconcile_ids(o), f"{head}: its Id range reconciled"]
    return [f"{head}: not judged by one Id range (its other ranges' jobs may still be storing)"]


def _org_count_or_note(o: ObjectRead, created_by: dt.datetime | None) -> int | str:
    """The org's count, or what the job's result says when Salesforce will not count the object: refused, or
    timing out still after OrgClient's retries (a check must never fail a job whose records are all stored).
    Other transient failures hand the job back, as any read's do."""
    try:
        return org_count(o, created_by)
    except SalesforceError as exc:
        if is_transient(exc) and exc.code.rpartition(":")[2] != "QUERY_TIMEOUT":
            raise
        log.warning("count of %s unavailable (%s): no count check", o.obj, exc.code)
        return f"count check unavailable ({exc.code or exc.status})"


def org_count(o: ObjectRead, created_by: dt.datetime | None) -> int:
    """Records live in the org (query, not queryAll: the recycle bin is not counted, as storage does not count a
    soft-deleted record live)."""
    return o.reader.query_page(count_soql(o.obj, created_by), query_all=False).total_size


def stored_count(o: ObjectRead) -> int:
    o.run.wait_stored()  # storage's count must include every chunk of the job
    return o.run.storage.count_live(o.run.org, o.obj)


def has_created_date(o: ObjectRead) -> bool:
    return any(f.name.lower() == "createddate" for f in o.data.fields)
