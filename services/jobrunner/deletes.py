"""Deletes a data job stores besides the records it reads: those the delete log names for the window (soft),
and those the Id reconciliation finds storage holds and the org no longer has (hard)."""

from __future__ import annotations

import datetime as dt
import logging

from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner import domain
from services.jobrunner.bulk_read import org_ids_bulk
from services.jobrunner.domain import Plan
from services.jobrunner.object_read import ObjectRead
from services.jobrunner.rest_read import org_ids_rest
from services.jobrunner.salesforce import SalesforceError
from services.sfclient import is_transient

log = logging.getLogger("services.jobrunner.jobs")


def store_delete_log(o: ObjectRead, plan: Plan) -> None:
    """Records the delete log has for the window and the window's read did not return (deleted, then purged
    from the recycle bin): soft-deleted now, hard-deleted by the next reconciliation. Records the read did
    return are already stored in the state queryAll gave (deleted, or undeleted since)."""
    assert plan.deleted_since is not None
    end = max(plan.end, plan.deleted_since + dt.timedelta(minutes=2))
    try:
        body = o.reader.deleted(o.obj, plan.deleted_since, end)
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


def reconcile_ids(o: ObjectRead) -> str:
    """Every Id in the org (queryAll, so the recycle bin counts as present) against every Id storage holds
    live or soft-deleted: the ones storage holds and the org no longer has are hard-deleted. Records the
    org has and storage lacks were just read by the full copy this runs after. The org's Ids come from a Bulk
    job, or through REST when the object or the org cannot have one (Bulk API disabled, the job refused or
    failed: a warning in the job's result)."""
    o.run.wait_stored()  # storage's view must include every chunk of the read
    org_ids: set[str] | None = None
    if o.data.bulk_supported:
        try:
            org_ids = org_ids_bulk(o)
        except SalesforceError as exc:
            if is_transient(exc):
                raise  # still failing after OrgClient's retries: the job is handed back
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
