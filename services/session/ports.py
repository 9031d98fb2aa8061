"""The small interfaces the session application depends on: the clock, the event publisher and the
projection store. The adapters are services.platform.bus.Bus (publisher) and services.session.store.Projection;
the in-memory fakes are in tests/platform/fakes.py and tests/session/fakes.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from sfvault.events.v1 import events_pb2 as pb

from services.session import domain as d


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class Publisher(Protocol):
    async def publish(self, env: pb.Envelope) -> bool: ...


class ProjectionTransaction(Protocol):
    """Claims, reads and writes that commit together, or not at all."""

    async def claim(self, event_ids: Sequence[str]) -> set[str]:
        """Record the events as processed; returns those that were not processed before."""
        ...

    async def load(self, session_ids: Sequence[str]) -> dict[str, d.Session]: ...

    async def save(self, sessions: Iterable[d.Session], jobs: Iterable[tuple[str, d.Job]]) -> None:
        """Store the sessions' states and the jobs that changed (each with its session id)."""
        ...


class ProjectionStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[ProjectionTransaction]: ...

    async def get(self, session_id: str) -> d.Session | None: ...

    async def open_sessions(self) -> dict[str, d.Session]:
        """The sessions still PENDING or RUNNING."""
        ...

    async def unannounced_final_sessions(self) -> dict[str, d.Session]:
        """The final sessions whose SessionFinished has not come back from the stream yet."""
        ...

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
        """Newest first by the time listed (requested, else started), then session id, both descending."""
        ...
