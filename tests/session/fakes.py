"""In-memory fakes of the session application's ports (services/session/ports.py); the bus fake is in
tests/platform/fakes.py. tests/session/test_projection_contract.py holds this projection and the PostgreSQL
one to the same rules."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Iterable, Sequence

from services.session import domain as d
from services.session import domain_alerts as alerts
from services.session.domain_anomaly import History, PastSession


class FakeClock:
    def __init__(self, now: dt.datetime | None = None) -> None:
        self.current = now or dt.datetime.now(dt.UTC)

    def now(self) -> dt.datetime:
        return self.current

    def advance(self, delta: dt.timedelta) -> None:
        self.current += delta


@dataclasses.dataclass
class _Stored:
    session: d.Session
    listed_at: dt.datetime


class FakeTransaction:
    def __init__(self, store: FakeProjection) -> None:
        self.store = store
        self.claimed: set[str] = set()
        self.sessions: dict[str, d.Session] = {}
        self.jobs: dict[tuple[str, str], d.Job] = {}
        self.new_alerts: dict[str, alerts.Alert] = {}

    async def claim(self, event_ids: Sequence[str]) -> set[str]:
        fresh = {e for e in event_ids if e not in self.store.processed and e not in self.claimed}
        self.claimed |= fresh
        return fresh

    async def load(self, session_ids: Sequence[str]) -> dict[str, d.Session]:
        found = {sid: self.store.read(sid) for sid in session_ids}
        return {sid: s for sid, s in found.items() if s is not None}

    async def save(self, sessions: Iterable[d.Session], jobs: Iterable[tuple[str, d.Job]]) -> None:
        for s in sessions:
            self.sessions[s.session_id] = s
        for sid, j in jobs:
            self.jobs[(sid, j.job_id)] = j

    async def history(self, session: d.Session, limit: int) -> History:
        # what this transaction saved counts, as in PostgreSQL (jobs saved apart, like the store's rows)
        pending = {
            sid: dataclasses.replace(s, jobs={**self.store.jobs.get(sid, {}), **self._jobs_of(sid)})
            for sid, s in self.sessions.items()
        }
        return self.store.history(session, limit, pending)

    def _jobs_of(self, session_id: str) -> dict[str, d.Job]:
        return {job_id: j for (sid, job_id), j in self.jobs.items() if sid == session_id}

    async def add_alert(self, alert: alerts.Alert) -> bool:
        if alert.alert_id in self.store.alerts.alerts or alert.alert_id in self.new_alerts:
            return False
        self.new_alerts[alert.alert_id] = alert
        return True


class FakeProjection:
    """The projection as dicts. As in PostgreSQL, a session's row and its jobs' rows are stored apart: a
    session saved without a changed job keeps the job as last saved; a transaction that raises leaves no trace."""

    def __init__(self) -> None:
        self.processed: set[str] = set()
        self.sessions: dict[str, _Stored] = {}
        self.jobs: dict[str, dict[str, d.Job]] = {}
        self.fail_next: BaseException | None = None  # raised by the next transaction's commit (an outage)
        self.alerts = FakeAlerts()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeTransaction]:
        tx = FakeTransaction(self)
        yield tx
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        self.processed |= tx.claimed
        self.alerts.alerts.update(tx.new_alerts)
        for (sid, job_id), job in tx.jobs.items():
            self.jobs.setdefault(sid, {})[job_id] = job
        for sid, s in tx.sessions.items():
            listed = s.requested_at or s.started_at or dt.datetime.now(dt.UTC)
            self.sessions[sid] = _Stored(dataclasses.replace(s, jobs={}), listed)

    def read(self, session_id: str) -> d.Session | None:
        stored = self.sessions.get(session_id)
        if stored is None:
            return None
        return dataclasses.replace(stored.session, jobs=dict(self.jobs.get(session_id, {})))

    async def get(self, session_id: str) -> d.Session | None:
        return self.read(session_id)

    def history(self, session: d.Session, limit: int, pending: dict[str, d.Session] | None = None) -> History:
        until = session.finished_at or dt.datetime.now(dt.UTC)
        earlier = [
            s
            for s in {**self._all(), **(pending or {})}.values()
            if s.policy_id == session.policy_id
            and s.kind == d.Kind.BACKUP
            and s.session_id != session.session_id
            and s.is_final
            and s.finished_at is not None
            and s.finished_at <= until
        ]
        earlier.sort(key=lambda s: (s.finished_at, s.session_id), reverse=True)
        records: dict[str, int] = {}
        for s in earlier:
            for name, counts in d.object_counts(s).items():
                records[name] = records.get(name, 0) + counts.new_versions - counts.deleted
        past = tuple(
            PastSession(s.session_id, s.finished_at, s.initial, d.object_counts(s))
            for s in earlier
            if s.status in (d.Status.SUCCESS, d.Status.WARNING)
        )[:limit]
        return History(past, records)

    async def open_sessions(self) -> dict[str, d.Session]:
        return {sid: s for sid, s in self._all().items() if s.status in (d.Status.PENDING, d.Status.RUNNING)}

    async def unannounced_final_sessions(self) -> dict[str, d.Session]:
        return {sid: s for sid, s in self._all().items() if s.is_final and not s.finished_event_seen}

    def _all(self) -> dict[str, d.Session]:
        return {sid: s for sid in self.sessions if (s := self.read(sid)) is not None}

    async def list(self, q: d.SessionQuery) -> d.Page:
        rows = sorted(((st.listed_at, sid) for sid, st in self.sessions.items()), reverse=True)
        chosen = []
        for listed, sid in rows:
            s = self.sessions[sid].session
            if q.policy_id and s.policy_id != q.policy_id:
                continue
            if q.kind is not None and s.kind != q.kind:
                continue
            if q.status is not None and s.status != q.status:
                continue
            if q.after is not None and listed < q.after:
                continue
            if q.before is not None and listed >= q.before:
                continue
            if q.page_after is not None and (listed, sid) >= q.page_after:
                continue
            chosen.append((listed, sid))
        more = len(chosen) > q.page_size
        chosen = chosen[: q.page_size]
        sessions = [found for _, sid in chosen if (found := self.read(sid)) is not None]
        return d.Page(sessions, chosen[-1] if more and chosen else None)


class FakeAlerts:
    """The alert store as a dict (ports.AlertStore)."""

    def __init__(self) -> None:
        self.alerts: dict[str, alerts.Alert] = {}

    async def due(self, now: dt.datetime, limit: int) -> list[tuple[alerts.Alert, int, alerts.Delivery]]:
        found = [
            (a, n, x)
            for a in self.alerts.values()
            for n, x in enumerate(a.deliveries)
            if x.status == "pending" and x.next_attempt_at is not None and x.next_attempt_at <= now
        ]
        found.sort(key=lambda t: t[2].next_attempt_at or now)
        return found[:limit]

    async def next_due(self) -> dt.datetime | None:
        times = [
            x.next_attempt_at
            for a in self.alerts.values()
            for x in a.deliveries
            if x.status == "pending" and x.next_attempt_at is not None
        ]
        return min(times) if times else None

    async def update(self, alert_id: str, number: int, delivery: alerts.Delivery) -> None:
        alert = self.alerts[alert_id]
        deliveries = list(alert.deliveries)
        deliveries[number] = delivery
        self.alerts[alert_id] = dataclasses.replace(alert, deliveries=tuple(deliveries))

    async def page(
        self, *, policy_id: str = "", session_id: str = "", kind: str = "", page_size: int = 50, page_after: str = ""
    ) -> tuple[list[alerts.Alert], str]:
        chosen = sorted(self.alerts.values(), key=lambda a: (a.at, a.alert_id), reverse=True)
        chosen = [
            a
            for a in chosen
            if (not policy_id or a.policy_id == policy_id)
            and (not session_id or a.session_id == session_id)
            and (not kind or a.kind == kind)
        ]
        if page_after:
            ids = [a.alert_id for a in chosen]
            chosen = chosen[ids.index(page_after) + 1 :] if page_after in ids else []
        more = len(chosen) > page_size
        chosen = chosen[:page_size]
        return chosen, (chosen[-1].alert_id if more and chosen else "")


class FakeWebhooks:
    """Records what it was sent; fails while `down` is set."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.down = False

    async def post(self, url: str, body: bytes) -> None:
        if self.down:
            raise ConnectionRefusedError("receiver down")
        self.sent.append((url, body))


class FakeMailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def send(self, to: str, subject: str, body: str) -> None:
        self.sent.append((to, subject, body))
