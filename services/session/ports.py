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
from services.session import domain_alerts as alerts
from services.session.domain_anomaly import History


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

    async def add_alert(self, alert: alerts.Alert) -> bool:
        """Store an alert and its pending deliveries with the session's end; False if its id is stored already."""
        ...

    async def history(self, session: d.Session, limit: int) -> History:
        """The policy's earlier backups (other than `session`, finished no later than it): the last `limit` that
        ended Success or Warning with their per-object counts, newest first, and per object the new versions less
        the deleted ones over every earlier backup that ended."""
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

    async def list(self, query: d.SessionQuery) -> d.Page:
        """One page of the sessions the query selects, in its order."""
        ...


class AlertStore(Protocol):
    """Alerts and their deliveries (the tables `alerts` and `deliveries`; an alert is stored by the projection's
    transaction that ends its session, ProjectionTransaction.add_alert)."""

    async def due(self, now: dt.datetime, limit: int) -> list[tuple[alerts.Alert, int, alerts.Delivery]]:
        """Pending deliveries whose next attempt is due, oldest first: (alert, delivery's number, delivery)."""
        ...

    async def next_due(self) -> dt.datetime | None:
        """When the earliest pending delivery is due."""
        ...

    async def update(self, alert_id: str, number: int, delivery: alerts.Delivery) -> None: ...

    async def page(
        self, *, policy_id: str = "", session_id: str = "", kind: str = "", page_size: int = 50, page_after: str = ""
    ) -> tuple[list[alerts.Alert], str]:
        """Newest first; the second item continues the listing ("" at its end)."""
        ...


class WebhookSender(Protocol):
    async def post(self, url: str, body: bytes) -> None:
        """POST the JSON body; raises (with a message that holds no URL) unless the answer is 2xx."""
        ...


class Mailer(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None:
        """Send a plain-text e-mail through the service's SMTP server; raises on failure."""
        ...
