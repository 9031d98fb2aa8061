"""The small interfaces discovery's application depends on: the clock, a logged-in Salesforce org (and how
to log in), storage's health, the bus, the session service (for the scheduler), and its stores. The adapters
are salesforce.py, storage_client.py, services.platform.bus.Bus, session_client.py, store.py and
store_tokens.py; the in-memory fakes are in tests/discovery/fakes.py (the bus's in tests/platform/fakes.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sfvault.jobs.v1 import jobs_pb2 as jobs

from services.discovery import domain as d
from services.discovery.domain import SessionDecision, SessionRecord, StoredJob
from services.discovery.domain_split import IdRange
from services.platform.auth import AuditEntry, Claims


class Conflict(Exception):
    """A row with this id exists already, or a row still depends on the one being removed."""


class DescribeFailed(RuntimeError):
    """describeGlobal could not be read: the session cannot be planned."""


@dataclass(frozen=True)
class Fetched:
    """A describe answer: the body, or None when the org said 304 Not Modified."""

    body: dict[str, Any] | None
    date: str = ""  # the org's Date header, the next If-Modified-Since


class StorageUnreachable(RuntimeError):
    pass


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class OrgSession(Protocol):
    """A logged-in org (salesforce.SalesforceOrg); its methods block and run in worker threads."""

    @property
    def salesforce_org_id(self) -> str: ...
    @property
    def instance_url(self) -> str: ...
    @property
    def api_calls(self) -> int: ...
    @property
    def org_usage(self) -> tuple[int, int]: ...
    def describe_global(self, since: str = "") -> Fetched: ...
    def describe_many(
        self, wanted: Sequence[tuple[str, str]], parallel: int = 4
    ) -> dict[str, Fetched | DescribeFailed]: ...
    def check_access(self) -> list[str]: ...
    def live_ids(self, object_name: str) -> set[str]: ...
    def record_counts(self, names: Sequence[str]) -> dict[str, int]: ...
    def edge_id(self, object_name: str, *, highest: bool) -> str:
        """The object's lowest (or highest) record Id, "" when it has none: one query (ORDER BY Id, LIMIT 1)."""
        ...


Connector = Callable[[d.Connection], OrgSession]  # logs in; raises the salesforce module's errors
StorageProbe = Callable[[], Awaitable[None]]  # raises StorageUnreachable


class Publisher(Protocol):
    async def emit(
        self, payload: Any, *, session_id: str, job_id: str = "", id_parts: tuple[object, ...] = ()
    ) -> bool: ...
    async def enqueue_job(self, spec: jobs.JobSpec) -> bool: ...


class SessionStarter(Protocol):
    async def running_session(self, policy_id: str) -> str | None: ...

    async def start(self, policy: d.Policy, session_id: str) -> str: ...


class DiscoveryStore(Protocol):
    """Orgs, policies, and per session its plan, the schema seen and the jobs' outcomes."""

    async def create_org(self, org: d.Org) -> d.Org:
        """Raises Conflict when the org id is taken."""
        ...

    async def get_org(self, org_id: str) -> d.Org | None: ...
    async def list_orgs(self) -> list[d.Org]: ...
    async def update_org(self, org: d.Org) -> d.Org | None: ...
    async def set_org_identity(self, org_id: str, salesforce_org_id: str, instance_url: str) -> None: ...
    async def delete_org(self, org_id: str) -> bool:
        """Raises Conflict while a policy still names the org."""
        ...

    async def create_policy(self, policy: d.Policy) -> d.Policy:
        """Raises Conflict when the policy id is taken (or its org does not exist)."""
        ...

    async def get_policy(self, policy_id: str) -> d.Policy | None: ...
    async def list_policies(self, org_id: str = "") -> list[d.Policy]: ...
    async def update_policy(self, policy: d.Policy) -> d.Policy | None: ...
    async def delete_policy(self, policy_id: str) -> bool: ...
    async def get_session(self, session_id: str) -> SessionRecord | None: ...
    async def previous_session(self, policy_id: str, session_id: str) -> SessionRecord | None: ...
    async def session_schema(self, session_id: str) -> d.Schema: ...
    async def session_jobs(self, session_id: str) -> list[StoredJob]: ...
    async def describes(self, hashes: Iterable[str]) -> dict[str, bytes]: ...
    async def save_session(self, decision: SessionDecision) -> SessionRecord:
        """Record a session's decision at once; a session already recorded is kept as it was (a redelivery
        re-publishes the first decision), and that first record is returned."""
        ...

    async def record_outcomes(self, outcomes: Sequence[tuple[str, str, str]]) -> None: ...
    async def completed_jobs(self, session_id: str, outcomes: Sequence[str]) -> set[str]: ...
    async def mark_published(self, session_id: str) -> None: ...
    async def object_splits(self, policy_id: str) -> dict[str, tuple[IdRange, ...]]:
        """The Id ranges kept for the policy's split objects (an object not named is read whole)."""
        ...

    async def keep_split(
        self, policy_id: str, object_name: str, ranges: Sequence[IdRange], replacing: Sequence[IdRange] = ()
    ) -> tuple[IdRange, ...]:
        """Keeps `ranges` as the object's split when it has none (`replacing` empty), or when its split is still
        `replacing` (its top range cut further); returns the split kept, which is another's when a concurrent
        plan decided first."""
        ...


class ScheduleRunStore(Protocol):
    """The record of scheduled runs: when each policy last fired, and what came of each trigger."""

    async def last_due(self, policy_id: str) -> dt.datetime | None: ...

    async def claim(self, policy_id: str, due_at: dt.datetime) -> bool:
        """True for the first to claim this run of this policy (replicas agree through it)."""
        ...

    async def decide(self, policy_id: str, due_at: dt.datetime, session_id: str = "", skipped: str = "") -> None: ...

    async def failed_start(self, policy_id: str, since: dt.datetime) -> dt.datetime | None:
        """The policy's latest run, if it is due after `since` and could not start (to try it again)."""
        ...


class TokenRegistry(Protocol):
    """The registered tokens' claims (never a token) and their revocations."""

    async def register(self, claims: Claims, by: str) -> d.TokenRecord:
        """Idempotent: a token registered again keeps its first record."""
        ...

    async def list_tokens(self, include_expired: bool, now: dt.datetime) -> list[d.TokenRecord]: ...

    async def revoke(self, token_id: str, by: str, now: dt.datetime) -> d.TokenRecord | None:
        """None for a token never registered; the first revocation's time and author stay."""
        ...

    async def revoked_unexpired(self, now: dt.datetime) -> list[d.TokenRecord]: ...


class AuditLog(Protocol):
    """The audit of changes every service appends (services.platform.auth.StreamAudit)."""

    async def read(
        self, since: float | None = None, actor: str = "", limit: int = 500, after_seq: int = 0
    ) -> tuple[list[AuditEntry], int]: ...


class RevocationFeed(Protocol):
    """The KV bucket of revoked token ids every service follows (services.platform.auth.KvRevocationFeed)."""

    async def revoke(self, token_id: str, revoked_at: float, revoked_by: str) -> None: ...
