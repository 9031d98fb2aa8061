"""Keep (issue 18): retention (the prune step), pinned restore points, legal holds, the retention horizon.

The rules (applied by store_retention.py in SQL, per org):
- A version (of a record, a metadata component, a file) is prunable when it was superseded -- a later version of
  the same item exists -- before now - `days` (the database's clock: captured_at is the database's now()), or
  when it is beyond the last `versions` of its item. 0 switches a rule off; both 0: nothing is prunable.
- The latest version of every item (live or deleted) stays. With `prune_latest` (and `days`), a record whose
  latest version is a deletion captured before the cutoff goes whole (every version and its head): the backup
  forgets it. A live record's latest version always stays (the next incremental compares with it).
- A pin at T keeps, for each record of its objects (every object when it names none; metadata only then), the
  version in force at T. A whole-record prune skips a record a pin falls after the first version of.
- An active legal hold on the org keeps everything (the step says `held`, prunes nothing, is done); one on an
  object keeps that object's record and file versions.
- File bodies (and metadata bodies) no version of any org references any more go last: a body two records (or
  two orgs) share stays while one references it. Their bytes are the step's bytes_freed.
- The horizon: per org and object (and '#metadata', 'file:<object>'), the latest time a deleted version was
  still in force. An as-of read of a time before it (GetRecordAsOf, ExportObjectAsOf, ReadRecordsAsOf,
  CompareAsOf's from, GetMetadataAsOf) fails FAILED_PRECONDITION -- except at a pinned time, where every
  record's version in force was kept.
- A step is bounded (max_versions versions and bodies), one transaction, idempotent by (job, chunk_seq) as every
  chunk; `done` when it did less than its bound. A dry run counts everything in one step and deletes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Sequence

from services.storage.application import ChunkRef, Storage
from services.storage.domain import (
    ChunkOutcome,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    check_api_name,
    check_token,
    normalize_org_id,
)
from services.storage.store_retention import HoldRow, PruneResult, PruneRule, RetentionStore

JOB_TYPE_PRUNE = 6  # events.v1.JobType.JOB_TYPE_PRUNE
DEFAULT_STEP, MAX_STEP = 50_000, 500_000
MAX_REASON = 1000
MAX_DAYS, MAX_VERSIONS = 36_500, 1_000_000  # a century; far more versions than any record has
_HOLD_ID = re.compile(r"[0-9]{1,18}")
log = logging.getLogger(__name__)


def check_rule(days: int, versions: int, prune_latest: bool) -> PruneRule:
    if not 0 <= days <= MAX_DAYS or not 0 <= versions <= MAX_VERSIONS:
        raise InvalidArgument(
            f"retention days must be 0 to {MAX_DAYS} and versions 0 to {MAX_VERSIONS}, got {days} and {versions}"
        )
    if prune_latest and days == 0:
        raise InvalidArgument("prune_latest needs retention days (a deleted record goes when older than them)")
    return PruneRule(days, versions, prune_latest)


def horizon_message(horizon: dt.datetime, when: dt.datetime, scope: str) -> str:
    return (
        f"restore points before {horizon.isoformat()} were pruned by retention ({scope}: the versions in force at "
        f"{when.isoformat()} may be gone); ask for a time at or after {horizon.isoformat()} or a pinned point"
    )


class Retention:
    """The keep use cases over storage's application (its jobs, outbox and file repository)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        store = storage.store
        assert isinstance(store, RetentionStore), "the store must include RetentionStore"
        self.store: RetentionStore = store

    async def prune_step(
        self, at: ChunkRef, rule: PruneRule, *, dry_run: bool = False, max_versions: int = 0
    ) -> PruneResult:
        job, seq = await self.storage._job(at.org_id, at.session_id, at.job_id, at.seq), at.seq
        if job.job_type != JOB_TYPE_PRUNE:
            raise FailedPrecondition(f"job {job.job_id} is not a prune job (BeginJob with JOB_TYPE_PRUNE)")
        if max_versions < 0 or max_versions > MAX_STEP:
            raise InvalidArgument(f"max_versions must be between 0 and {MAX_STEP}, got {max_versions}")
        limit = max_versions or DEFAULT_STEP
        digest = hashlib.sha256(
            f"prune:{rule.days}:{rule.versions}:{int(rule.prune_latest)}:{int(dry_run)}:{limit}".encode()
        ).digest()
        result, replayed, locations = await self.store.prune_step(
            job.job_key, job.org_key, seq, digest, rule, dry_run=dry_run, limit=limit
        )
        for location in locations:  # after the commit: an unreferenced body left by a crash here is garbage only
            try:
                await self.storage.files.delete(location)
            except Exception as exc:
                log.warning("file repository: an unreferenced body was not deleted (%s)", type(exc).__name__)
        await self.storage._published(job, seq, ChunkOutcome(result, replayed))
        return PruneResult.from_json(result["prune"], replayed=replayed)

    async def pin(
        self, org_id: str, at: dt.datetime | None, reason: str, session_id: str = "", objects: Sequence[str] = ()
    ) -> str:
        if at is None:
            raise InvalidArgument("at is required: the point in time to keep")
        if len(reason) > MAX_REASON:
            raise InvalidArgument(f"reason is longer than {MAX_REASON} characters")
        for name in objects:
            check_api_name(name)
        if session_id:
            check_token(session_id, "session_id")
        org_key = await self.storage._org_key(org_id)
        return str(await self.store.pin(org_key, at, list(objects), reason, session_id))

    async def set_hold(self, org_id: str, object_name: str, reason: str, policy_id: str, set_by: str) -> HoldRow:
        org = normalize_org_id(org_id)
        if object_name:
            check_api_name(object_name)
        if not reason.strip():
            raise InvalidArgument("reason is required: why the data is held")
        if len(reason) > MAX_REASON or len(policy_id) > 100:
            raise InvalidArgument(f"reason is longer than {MAX_REASON} characters or policy_id than 100")
        return await self.store.set_hold(org, object_name, reason, policy_id, set_by)

    async def release_hold(self, hold_id: str, released_by: str) -> HoldRow:
        if not _HOLD_ID.fullmatch(hold_id):
            raise InvalidArgument(f"hold_id {hold_id!r} is not a hold id")
        hold = await self.store.release_hold(int(hold_id), released_by)
        if hold is None:
            raise NotFound(f"no legal hold {hold_id}")
        return hold

    async def holds(self, org_id: str, include_released: bool) -> list[HoldRow]:
        org = normalize_org_id(org_id) if org_id else ""
        return await self.store.holds(org, include_released)

    async def check_as_of(self, org_id: str, objects: Sequence[str], when: dt.datetime | None) -> None:
        """FAILED_PRECONDITION when `when` is before the horizon of one of these objects (every object of the
        org when none is named; '#metadata' for metadata; 'file:<object>' for an object's file bodies) and not a
        pinned point of them (a pin of an object keeps its file versions in force then too)."""
        if when is None:
            return
        try:
            org_key = await self.storage._org_key(org_id)
        except (NotFound, InvalidArgument):
            return  # the read itself says so
        names = [o.lower() for o in objects if o]
        horizon = await (self.store.horizon(org_key, names) if names else self.store.any_horizon(org_key))
        if horizon is None or when >= horizon:
            return
        pinned = [n.removeprefix("file:") for n in names]
        if names and "#metadata" not in names and await self.store.pinned_at(org_key, when, pinned):
            return
        raise FailedPrecondition(horizon_message(horizon, when, ", ".join(objects) or "the org"))
