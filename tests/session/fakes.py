"""In-memory fakes of the session application's ports (services/session/ports.py); the bus fake is in
tests/platform/fakes.py. tests/session/test_projection_contract.py holds this projection and the PostgreSQL
one to the same rules."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Iterable, Sequence

from services.session import domain as d


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


class FakeProjection:
    """The projection as dicts. As in PostgreSQL, a session's row and its jobs' rows are stored apart: a
    session saved without a changed job keeps the job as last saved; a transaction that raises leaves no trace."""

    def __init__(self) -> None:
        self.processed: set[str] = set()
        self.sessions: dict[str, _Stored] = {}
        self.jobs: dict[str, dict[str, d.Job]] = {}
        self.fail_next: BaseException | None = None  # raised by the next transaction's commit (an outage)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeTransaction]:
        tx = FakeTransaction(self)
        yield tx
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        self.processed |= tx.claimed
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

    async def open_sessions(self) -> dict[str, d.Session]:
        return {sid: s for sid, s in self._all().items() if s.status in (d.Status.PENDING, d.Status.RUNNING)}

    async def unannounced_final_sessions(self) -> dict[str, d.Session]:
        return {sid: s for sid, s in self._all().items() if s.is_final and not s.finished_event_seen}

    def _all(self) -> dict[str, d.Session]:
        return {sid: s for sid in self.sessions if (s := self.read(sid)) is not None}

    async def list(
        self,
        *,
        policy_id: str = "",
        status: d.Status | None = None,
        after: dt.datetime | None = None,
        before: dt.datetime | None = None,
        page_size: int = 50,
        page_after: tuple[dt.datetime, str] | None = None,
        kind: d.Kind | None = None,
    ) -> d.Page:
        rows = sorted(((st.listed_at, sid) for sid, st in self.sessions.items()), reverse=True)
        chosen = []
        for listed, sid in rows:
            s = self.sessions[sid].session
            if policy_id and s.policy_id != policy_id:
                continue
            if kind is not None and s.kind != kind:
                continue
            if status is not None and s.status != status:
                continue
            if after is not None and listed < after:
                continue
            if before is not None and listed >= before:
                continue
            if page_after is not None and (listed, sid) >= page_after:
                continue
            chosen.append((listed, sid))
        more = len(chosen) > page_size
        chosen = chosen[:page_size]
        sessions = [found for _, sid in chosen if (found := self.read(sid)) is not None]
        return d.Page(sessions, chosen[-1] if more and chosen else None)
