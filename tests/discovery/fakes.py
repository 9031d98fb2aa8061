"""In-memory fakes of discovery's ports (services/discovery/ports.py): its store, the schedule runs, the
session service the scheduler asks and a logged-in org. tests/discovery/test_store_contract.py and
test_org_contract.py hold them and the real adapters (PostgreSQL, sforg) to the same rules; the bus fake is
tests/platform/fakes.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence

from services.discovery import domain as d
from services.discovery.domain import SessionDecision, SessionRecord, StoredJob
from services.discovery.domain_schedule import COULD_NOT_START
from services.discovery.domain_split import WHOLE, IdRange
from services.discovery.ports import Conflict, DescribeFailed, Fetched


class FakeClock:
    def __init__(self, now: dt.datetime | None = None) -> None:
        self.current = now or dt.datetime.now(dt.UTC)

    def now(self) -> dt.datetime:
        return self.current


class FakeDiscoveryStore:
    """Orgs, policies and sessions as dicts; times of creation and change from `clock` (the database's now())."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.orgs: dict[str, d.Org] = {}
        self.policies: dict[str, d.Policy] = {}
        self.sessions: dict[str, SessionRecord] = {}
        self.schemas: dict[str, d.Schema] = {}
        self.jobs: dict[str, list[StoredJob]] = {}
        self.describe_bodies: dict[str, bytes] = {}
        self.outcomes: dict[tuple[str, str], str] = {}
        self.splits: dict[tuple[str, str], tuple[IdRange, ...]] = {}

    def _now(self) -> dt.datetime:
        return self.clock.now() if self.clock is not None else dt.datetime.now(dt.UTC)

    # ---- orgs ---------------------------------------------------------------------------------------------

    async def create_org(self, org: d.Org) -> d.Org:
        if org.org_id in self.orgs:
            raise Conflict(f"org {org.org_id!r} exists already")
        now = self._now()
        stored = dataclasses.replace(org, salesforce_org_id="", instance_url="", created_at=now, updated_at=now)
        self.orgs[org.org_id] = stored
        return stored

    async def get_org(self, org_id: str) -> d.Org | None:
        return self.orgs.get(org_id)

    async def list_orgs(self) -> list[d.Org]:
        return [self.orgs[k] for k in sorted(self.orgs)]

    async def update_org(self, org: d.Org) -> d.Org | None:
        old = self.orgs.get(org.org_id)
        if old is None:
            return None
        new = dataclasses.replace(
            old, name=org.name, connection=org.connection, sandbox=org.sandbox, updated_at=self._now()
        )
        self.orgs[org.org_id] = new
        return new

    async def set_org_identity(self, org_id: str, salesforce_org_id: str, instance_url: str) -> None:
        if org_id in self.orgs:
            old = self.orgs[org_id]
            self.orgs[org_id] = dataclasses.replace(old, salesforce_org_id=salesforce_org_id, instance_url=instance_url)

    async def delete_org(self, org_id: str) -> bool:
        if any(p.org_id == org_id for p in self.policies.values()):
            raise Conflict(f"org {org_id!r} still has policies; delete them first")
        return self.orgs.pop(org_id, None) is not None

    # ---- policies -----------------------------------------------------------------------------------------

    async def create_policy(self, policy: d.Policy) -> d.Policy:
        if policy.policy_id in self.policies:
            raise Conflict(f"policy {policy.policy_id!r} exists already")
        now = self._now()
        stored = dataclasses.replace(policy, created_at=now, updated_at=now)
        self.policies[policy.policy_id] = stored
        return stored

    async def get_policy(self, policy_id: str) -> d.Policy | None:
        return self.policies.get(policy_id)

    async def list_policies(self, org_id: str = "") -> list[d.Policy]:
        return [p for k, p in sorted(self.policies.items()) if not org_id or p.org_id == org_id]

    async def update_policy(self, policy: d.Policy) -> d.Policy | None:
        old = self.policies.get(policy.policy_id)
        if old is None:
            return None
        new = dataclasses.replace(policy, created_at=old.created_at, updated_at=self._now())
        self.policies[policy.policy_id] = new
        return new

    async def delete_policy(self, policy_id: str) -> bool:
        self.splits = {k: v for k, v in self.splits.items() if k[0] != policy_id}  # ON DELETE CASCADE
        return self.policies.pop(policy_id, None) is not None

    # ---- sessions -----------------------------------------------------------------------------------------

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return self.sessions.get(session_id)

    async def previous_session(self, policy_id: str, session_id: str) -> SessionRecord | None:
        planned = [
            r for r in self.sessions.values() if r.policy_id == policy_id and r.planned and r.session_id != session_id
        ]
        planned.sort(key=lambda r: (r.planned_at or dt.datetime.min.replace(tzinfo=dt.UTC), r.session_id))
        return planned[-1] if planned else None

    async def session_schema(self, session_id: str) -> d.Schema:
        return self.schemas.get(session_id, d.Schema(()))

    async def session_jobs(self, session_id: str) -> list[StoredJob]:
        return list(self.jobs.get(session_id, []))

    async def describes(self, hashes: Iterable[str]) -> dict[str, bytes]:
        return {h: self.describe_bodies[h] for h in set(hashes) if h in self.describe_bodies}

    async def save_session(self, decision: SessionDecision) -> SessionRecord:
        record, schema = decision.record, decision.schema
        first = self.sessions.get(record.session_id)
        if first is not None:
            return first
        self.sessions[record.session_id] = record
        for digest, body in decision.describes.items():
            self.describe_bodies.setdefault(digest, body)
        if schema is not None:
            self.schemas[record.session_id] = d.Schema(tuple(sorted(schema.objects, key=lambda o: o.name)))
        self.jobs[record.session_id] = list(decision.jobs)
        return record

    async def record_outcomes(self, outcomes: Sequence[tuple[str, str, str]]) -> None:
        for session_id, job_id, outcome in outcomes:
            self.outcomes.setdefault((session_id, job_id), outcome)

    async def completed_jobs(self, session_id: str, outcomes: Sequence[str]) -> set[str]:
        return {job for (sid, job), outcome in self.outcomes.items() if sid == session_id and outcome in outcomes}

    async def mark_published(self, session_id: str) -> None:
        if session_id in self.sessions:
            self.sessions[session_id] = dataclasses.replace(self.sessions[session_id], published=True)

    async def object_splits(self, policy_id: str) -> dict[str, tuple[IdRange, ...]]:
        return {name: ranges for (pid, name), ranges in self.splits.items() if pid == policy_id}

    async def keep_split(
        self, policy_id: str, object_name: str, ranges: Sequence[IdRange], replacing: Sequence[IdRange] = ()
    ) -> tuple[IdRange, ...]:
        key = (policy_id, object_name)
        kept = self.splits.get(key)
        if (not replacing and kept is None) or (replacing and kept == tuple(replacing)):
            self.splits[key] = tuple(ranges)
        return self.splits.get(key, WHOLE)


class FakeScheduleRuns:
    def __init__(self) -> None:
        self.runs: dict[tuple[str, dt.datetime], tuple[str, str]] = {}  # -> (session id, skipped reason)

    async def last_due(self, policy_id: str) -> dt.datetime | None:
        return max((due for pid, due in self.runs if pid == policy_id), default=None)

    async def claim(self, policy_id: str, due_at: dt.datetime) -> bool:
        if (policy_id, due_at) in self.runs:
            return False
        self.runs[(policy_id, due_at)] = ("", "")
        return True

    async def decide(self, policy_id: str, due_at: dt.datetime, session_id: str = "", skipped: str = "") -> None:
        if (policy_id, due_at) in self.runs:
            self.runs[(policy_id, due_at)] = (session_id, skipped)

    async def failed_start(self, policy_id: str, since: dt.datetime) -> dt.datetime | None:
        latest = await self.last_due(policy_id)
        if latest is not None and latest > since and self.runs[(policy_id, latest)][1].startswith(COULD_NOT_START):
            return latest
        return None

    async def history(self, policy_id: str) -> list[dict[str, object]]:
        return [
            {"policy_id": pid, "due_at": due, "session_id": sid, "skipped_reason": skipped}
            for (pid, due), (sid, skipped) in sorted(self.runs.items())
            if pid == policy_id
        ]


class FakeSessionStarter:
    """The session service as the scheduler sees it: a running session per policy, or unreachable."""

    def __init__(self) -> None:
        self.running: str | None = None
        self.fail = False
        self.started: list[str] = []

    async def running_session(self, policy_id: str) -> str | None:
        if self.fail:
            raise ConnectionError("session service unreachable")
        return self.running

    async def start(self, policy: d.Policy, session_id: str) -> str:
        self.started.append(session_id)
        return session_id


class FakeOrg:
    """A logged-in org (the port ports.OrgSession) holding a few objects: their describes and live Ids.
    Answers 304 (a body of None) to a describe asked with the Date it last gave, while nothing changed."""

    DATE = "Thu, 01 Jan 2026 00:00:00 GMT"

    def __init__(self, objects: dict[str, list[dict[str, object]]], ids: dict[str, set[str]] | None = None) -> None:
        self.objects = objects  # name -> its fields as a describe lists them
        self.ids = ids or {}
        self.salesforce_org_id = "00D000000000001AAA"
        self.instance_url = "https://fake.my.salesforce.com"
        self.api_calls = 0
        self.org_usage = (0, 15_000)
        self.date = self.DATE

    def _call(self) -> None:
        self.api_calls += 1

    def change(self, date: str) -> None:
        """Something changed in the org at `date`: describes asked since an earlier date are sent again."""
        self.date = date

    def describe_global(self, since: str = "") -> Fetched:
        self._call()
        if since and since == self.date:
            return Fetched(None, since)
        sobjects = [{"name": name, "queryable": True, "retrieveable": True} for name in sorted(self.objects)]
        return Fetched({"sobjects": sobjects}, self.date)

    def describe_many(
        self, wanted: Sequence[tuple[str, str]], parallel: int = 4
    ) -> dict[str, Fetched | DescribeFailed]:
        out: dict[str, Fetched | DescribeFailed] = {}
        for name, since in wanted:
            self._call()
            if name not in self.objects:
                out[name] = DescribeFailed(
                    "describe returned HTTP 404 NOT_FOUND: The requested resource does not exist"
                )
            elif since and since == self.date:
                out[name] = Fetched(None, since)
            else:
                out[name] = Fetched({"name": name, "fields": list(self.objects[name])}, self.date)
        return out

    def check_access(self) -> list[str]:
        self._call()
        return []

    def live_ids(self, object_name: str) -> set[str]:
        self._call()
        return set(self.ids.get(object_name, set()))

    def record_counts(self, names: Sequence[str]) -> dict[str, int]:
        self._call()
        return {n: len(self.ids.get(n, set())) for n in names if n in self.objects}

    def edge_id(self, object_name: str, *, highest: bool) -> str:
        self._call()
        ids = self.ids.get(object_name, set())
        return (max(ids) if highest else min(ids)) if ids else ""
