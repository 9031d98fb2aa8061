"""Scheduled backups: start each policy's due session on time, at most one running session per policy.

A trigger that finds a session of its policy still running is skipped, and the skip is recorded with its
reason (table schedule_runs, and the audit log). A run that could not start (the session service away) is
tried again at each tick for START_RETRY_WINDOW after it fell due, with the same session id, so a short
outage at 02:00 does not cost the night's backup. Replicas agree through the table's primary key: the first
to claim a due run decides it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any, Protocol

from services.discovery import domain as d
from services.discovery.schedule import InvalidSchedule, latest_due
from services.discovery.store import COULD_NOT_START, DiscoveryStore, ScheduleRuns

log = logging.getLogger("sfvault.discovery.scheduler")
START_RETRY_WINDOW = dt.timedelta(minutes=30)
audit = logging.getLogger("sfvault.audit")


class SessionStarter(Protocol):
    async def running_session(self, policy_id: str) -> str | None: ...

    async def start(self, policy: d.Policy, session_id: str) -> str: ...


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


@dataclasses.dataclass(frozen=True)
class Decision:
    policy_id: str
    due_at: dt.datetime
    session_id: str = ""
    skipped: str = ""


def scheduled_session_id(policy_id: str, due_at: dt.datetime) -> str:
    """Deterministic, so a retried start is the same session."""
    return f"sched-{policy_id}-{due_at.astimezone(dt.UTC):%Y%m%dT%H%M}"[:120]


@dataclasses.dataclass
class Scheduler:
    store: DiscoveryStore
    runs: ScheduleRuns
    starter: SessionStarter
    clock: Clock

    async def tick(self) -> list[Decision]:
        now = self.clock.now()
        decisions: list[Decision] = []
        for policy in await self.store.list_policies():
            if not policy.schedule:
                continue
            last = await self.runs.last_due(policy.policy_id) or policy.created_at or now
            try:
                due = latest_due(policy.schedule, last, now)
            except InvalidSchedule as exc:
                log.error("policy %s has a bad schedule: %s", policy.policy_id, exc)
                continue
            if due is not None and await self.runs.claim(policy.policy_id, due):
                decisions.append(await self._decide(policy, due))
                continue
            failed = await self.runs.failed_start(policy.policy_id, now - START_RETRY_WINDOW)
            if failed is not None:
                decisions.append(await self._decide(policy, failed))
        return decisions

    async def _decide(self, policy: d.Policy, due: dt.datetime) -> Decision:
        session_id = scheduled_session_id(policy.policy_id, due)
        try:
            running = await self.starter.running_session(policy.policy_id)
            if running == session_id:  # an earlier attempt did start it; its answer was lost
                await self.runs.decide(policy.policy_id, due, session_id=session_id)
                return Decision(policy.policy_id, due, session_id=session_id)
            if running:
                reason = f"session {running} of this policy was still running"
                await self.runs.decide(policy.policy_id, due, skipped=reason)
                audit.info("schedule of policy %s due %s: skipped (%s)", policy.policy_id, due.isoformat(), reason)
                return Decision(policy.policy_id, due, skipped=reason)
            session_id = await self.starter.start(policy, session_id)
        except Exception as exc:  # the session service is unreachable: recorded, tried again within the window
            reason = f"{COULD_NOT_START}: {type(exc).__name__}"
            await self.runs.decide(policy.policy_id, due, skipped=reason)
            log.error("schedule of policy %s due %s: %s", policy.policy_id, due.isoformat(), reason)
            return Decision(policy.policy_id, due, skipped=reason)
        await self.runs.decide(policy.policy_id, due, session_id=session_id)
        audit.info("schedule of policy %s due %s: started session %s", policy.policy_id, due.isoformat(), session_id)
        return Decision(policy.policy_id, due, session_id=session_id)


class GrpcSessionStarter:
    """Asks the session service (with this service's own token)."""

    def __init__(self, address: str, token: str, credentials: Any = None) -> None:
        from sfvault.session.v1 import session_pb2_grpc

        from services.platform.auth import aio_channel

        self.channel = aio_channel(address, token, credentials)
        self.stub = session_pb2_grpc.SessionServiceStub(self.channel)

    async def running_session(self, policy_id: str) -> str | None:
        from sfvault.events.v1 import events_pb2 as pb
        from sfvault.session.v1 import session_pb2 as api

        for status in (pb.SESSION_STATUS_RUNNING, pb.SESSION_STATUS_PENDING):
            page = await self.stub.ListSessions(
                api.ListSessionsRequest(policy_id=policy_id, status=status, page_size=1), timeout=10
            )
            if page.sessions:
                return str(page.sessions[0].session_id)
        return None

    async def start(self, policy: d.Policy, session_id: str) -> str:
        from sfvault.session.v1 import session_pb2 as api

        # no stall timeout: the policy's applies, decided by discovery's planning like any session's
        request = api.StartSessionRequest(
            policy_id=policy.policy_id, org_id=policy.org_id, trigger="schedule", session_id=session_id
        )
        started = await self.stub.StartSession(request, timeout=10)
        return str(started.session_id)

    async def close(self) -> None:
        await self.channel.close()
