"""The planner's last delivery: a request that keeps failing fails its session with a reason, but an outage
(the database away) is never held against the session: it is raised, and the consumer waits it out."""

from __future__ import annotations

import datetime as dt
import threading
import types
from typing import Any

import psycopg
import pytest
from sfvault.events.v1 import events_pb2 as ev

from services.discovery import domain as d
from services.discovery.application import Planner, PlanningTimedOut
from services.discovery.domain import SessionDecision
from services.discovery.store import SessionRecord
from services.platform import events
from services.platform.bus import Delivery, is_transient


class Store:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.saved: list[SessionRecord] = []

    async def get_session(self, session_id: str) -> SessionRecord | None:
        raise self.error

    async def save_session(self, decision: SessionDecision) -> SessionRecord:
        self.saved.append(decision.record)
        return decision.record

    async def mark_published(self, session_id: str) -> None:
        return None


class Publisher:
    def __init__(self) -> None:
        self.emitted: list[Any] = []

    async def emit(self, payload: Any, **kw: Any) -> bool:
        self.emitted.append(payload)
        return True

    async def enqueue_job(self, spec: Any) -> bool:
        return True


def last_delivery(max_deliver: int) -> Delivery:
    env = events.envelope(ev.SessionRequested(policy_id="p"), session_id="s1", producer="test")
    msg = types.SimpleNamespace(metadata=types.SimpleNamespace(num_delivered=max_deliver))
    return Delivery(env, msg)  # type: ignore[arg-type]


async def _storage_ok() -> None:
    return None


def planner(store: Store, publisher: Publisher) -> Planner:
    return Planner(store, lambda c: None, _storage_ok, publisher, max_deliver=6)  # type: ignore[arg-type,return-value]


async def test_an_outage_on_the_last_delivery_does_not_fail_the_session() -> None:
    store, publisher = Store(psycopg.OperationalError("server closed the connection unexpectedly")), Publisher()
    with pytest.raises(psycopg.OperationalError):
        await planner(store, publisher).handle_batch([last_delivery(6)])
    assert publisher.emitted == [] and store.saved == []


async def test_a_request_failing_for_its_own_reason_fails_its_session_on_the_last_delivery() -> None:
    store, publisher = Store(KeyError("a bug")), Publisher()
    await planner(store, publisher).handle_batch([last_delivery(6)])
    [failed] = publisher.emitted
    assert isinstance(failed, ev.SessionFailed) and failed.reason == "discovery failed: KeyError"
    with pytest.raises(KeyError):  # an earlier delivery: retried
        await planner(Store(KeyError("a bug")), Publisher()).handle_batch([last_delivery(2)])


class PlanningStore(Store):
    """A store that knows the policy and its org, so planning reaches the org (whose login hangs)."""

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return None

    async def get_policy(self, policy_id: str) -> d.Policy:
        return d.Policy(policy_id=policy_id, org_id="acme")

    async def get_org(self, org_id: str) -> d.Org:
        return d.Org(
            org_id, "Acme", d.Connection("https://login.example.com", d.AuthFlow.CLIENT_CREDENTIALS, "i", "env:X")
        )


async def test_a_plan_that_hangs_is_cut_at_its_deadline_and_fails_the_session_on_the_last_attempt() -> None:
    released = threading.Event()

    def hanging_login(connection: d.Connection) -> Any:
        released.wait(30)  # the org never answers (a stalled response)
        raise RuntimeError("released")

    def hanging(store: Store, publisher: Publisher) -> Planner:
        return Planner(
            store,  # type: ignore[arg-type]
            hanging_login,
            _storage_ok,
            publisher,
            max_deliver=6,
            plan_timeout=dt.timedelta(seconds=0.3),
        )

    try:
        publisher = Publisher()
        with pytest.raises(PlanningTimedOut):  # not an outage: the consumer counts it and delivers it again
            await hanging(PlanningStore(KeyError()), publisher).handle_batch([last_delivery(1)])
        assert publisher.emitted == []
        assert not is_transient(PlanningTimedOut("x"))
        await hanging(PlanningStore(KeyError()), publisher).handle_batch([last_delivery(6)])
        [failed] = publisher.emitted
        assert isinstance(failed, ev.SessionFailed)
        assert failed.reason == "discovery failed: planning did not finish within 0.3 s"
    finally:
        released.set()
