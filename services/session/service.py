"""Composition root of the session service: wires the projection, the bus, the fold and the gRPC API.

`serve` runs until `stop` is set (SIGTERM in __main__): it then stops taking events, lets the batch in
hand commit, drains NATS and exits. `rebuild` replays the whole EVENTS stream into an empty projection.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable

from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2, session_pb2_grpc

from services.platform import db, events, serving
from services.platform.bus import Bus
from services.platform.grpcserver import GrpcServer
from services.session import consumers, translate
from services.session.alerting import AlertDispatcher
from services.session.api import SessionApi
from services.session.application import Clock, SessionService, SystemClock
from services.session.config import SessionSettings
from services.session.notify import HttpWebhooks, SmtpMailer
from services.session.store import Alerts, Projection

log = logging.getLogger("sfvault.session")
CONSUMER = consumers.CONSUMER
# how long a call waits for a database connection: its queries take milliseconds, so longer means PostgreSQL is
# away, and the caller is better served by UNAVAILABLE (and the loops by their retry) than by a long wait
DATABASE_WAIT_S = 5.0
ROLES = {
    "GetSession": "viewer",
    "ListSessions": "viewer",
    "ListJobs": "viewer",
    "WatchSession": "viewer",
    "StartSession": "operator|restorer",  # a backup for operators, a restore for restorers (api.StartSession)
    "CancelSession": "operator|restorer",
    "ListAlerts": "viewer",
}


async def serve(
    settings: SessionSettings,
    stop: asyncio.Event,
    *,
    clock: Clock | None = None,
    on_ready: Callable[[GrpcServer, SessionService], Awaitable[None] | None] | None = None,
) -> None:
    async with serving.runtime("session", settings, ROLES, database_wait_s=DATABASE_WAIT_S) as running:
        pool, bus = running.pool, running.bus
        projection = Projection(pool, settings.session_db_schema, CONSUMER)
        await projection.setup()
        the_clock = clock or SystemClock()
        alerting = alert_dispatcher(settings, Alerts(pool, settings.session_db_schema), the_clock)
        app = SessionService(
            projection,
            bus,
            the_clock,
            settings.stall_timeout,
            cancel_grace=settings.cancel_grace,
            alerting=alerting,
            watch_grace_s=settings.watch_grace_s,
        )
        service = session_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name
        server = await running.serve_grpc(
            [(session_pb2_grpc.add_SessionServiceServicer_to_server, SessionApi(app), service)], settings.session_port
        )
        await serving.announce_ready(on_ready, server, app)
        consumer = asyncio.create_task(
            consumers.consume_events(
                bus, app.handle_batch, stop, settings.session_batch_size, settings.session_ack_wait_s
            )
        )
        enforcer = asyncio.create_task(_enforce_forever(app, settings.stall_check_interval_s, stop))
        deliveries = asyncio.create_task(alerting.run(stop))

        async def database_answers() -> bool:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
            return True

        health = running.watch_health(stop, database_answers)
        await serving.until_stopped(stop, [consumer, enforcer, deliveries])
        await server.set_serving(False)
        await asyncio.wait_for(consumer, 30)  # the batch in hand commits and is acked
        await serving.cancel(enforcer, deliveries, health)


def alert_dispatcher(settings: SessionSettings, store: Alerts, clock: Clock) -> AlertDispatcher:
    mailer = SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_from,
        settings.smtp_username,
        settings.smtp_password_ref,
        settings.smtp_starttls,
    )
    return AlertDispatcher(
        store,
        HttpWebhooks(),
        mailer,
        clock,
        retry_base=dt.timedelta(seconds=settings.alert_retry_base_s),
        max_attempts=settings.alert_max_attempts,
    )


async def _enforce_forever(app: SessionService, interval_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await app.enforce()
        except Exception:
            log.exception("stall enforcement round failed; retrying next round")
        await app.next_round(interval_s, stop)


class _Silent:
    """A rebuild only folds: it must not publish terminations or announcements again."""

    async def publish(self, env: pb.Envelope) -> bool:
        return False


async def rebuild(settings: SessionSettings, schema: str | None = None, batch_size: int = 1000) -> int:
    """Replay EVENTS from its first message into an empty projection; returns the events folded."""
    pool = await db.open_pool(settings.database_url)
    bus = await Bus.connect(settings.bus_config(), producer="session-rebuild")
    durable = f"session-rebuild-{uuid.uuid4().hex[:8]}"
    try:
        projection = Projection(pool, schema or settings.session_db_schema, CONSUMER)
        await projection.setup()
        await projection.reset()
        app = SessionService(projection, _Silent(), SystemClock(), settings.stall_timeout, start_drafts=False)
        folded = 0
        async for messages in consumers.replay(bus, durable, batch_size):
            batch = []
            for seq, data in messages:
                try:
                    batch.append(translate.to_domain(events.decode(data)))
                except events.MalformedEvent:
                    log.warning("rebuild skipped malformed event at stream sequence %d", seq)
            await app.apply(batch)
            folded += len(batch)
        return folded
    finally:
        with contextlib.suppress(Exception):
            await bus.js.delete_consumer(bus.config.events_stream, durable)
        await bus.close()
        await pool.close()
