"""Composition root of the session service: wires the projection, the bus, the fold and the gRPC API.

`serve` runs until `stop` is set (SIGTERM in __main__): it then stops taking events, lets the batch in
hand commit, drains NATS and exits. `rebuild` replays the whole EVENTS stream into an empty projection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2, session_pb2_grpc

from services.platform import db, events
from services.platform.auth import BusAccess
from services.platform.bus import Bus
from services.platform.grpcserver import GrpcServer, start_grpc_server, watch_health
from services.session import consumers, translate
from services.session.api import SessionApi
from services.session.application import Clock, SessionService, SystemClock
from services.session.config import SessionSettings
from services.session.store import Projection

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
    "StartSession": "operator",
    "CancelSession": "operator",
}


async def serve(
    settings: SessionSettings,
    stop: asyncio.Event,
    *,
    clock: Clock | None = None,
    on_ready: Callable[[GrpcServer, SessionService], Awaitable[None] | None] | None = None,
) -> None:
    pool = await db.open_pool(settings.database_url, timeout_s=DATABASE_WAIT_S)
    bus = await Bus.connect(settings.bus_config(), producer="session")
    grpc_server: GrpcServer | None = None
    bus_access: BusAccess | None = None
    try:
        projection = Projection(pool, settings.session_db_schema, CONSUMER)
        await projection.setup()
        app = SessionService(
            projection, bus, clock or SystemClock(), settings.stall_timeout, cancel_grace=settings.cancel_grace
        )
        interceptors = settings.auth_interceptors(ROLES)
        bus_access = await BusAccess.attach(interceptors, bus, "session")  # revocations and the audit
        grpc_server = await start_grpc_server(
            [
                (
                    session_pb2_grpc.add_SessionServiceServicer_to_server,
                    SessionApi(app),
                    session_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
                )
            ],
            port=settings.session_port,
            interceptors=interceptors,
            credentials=settings.server_credentials(),
        )
        await grpc_server.set_serving(True)
        log.info("session service serving on port %d", grpc_server.port)
        if on_ready is not None:
            result = on_ready(grpc_server, app)
            if asyncio.iscoroutine(result):
                await result
        consumer = asyncio.create_task(
            consumers.consume_events(
                bus, app.handle_batch, stop, settings.session_batch_size, settings.session_ack_wait_s
            )
        )
        enforcer = asyncio.create_task(_enforce_forever(app, settings.stall_check_interval_s, stop))

        async def database_answers() -> bool:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
            return True

        async def nats_connected() -> bool:
            return bool(bus.nc.is_connected)

        health = asyncio.create_task(
            watch_health(grpc_server, [database_answers, nats_connected], stop, settings.health_check_interval_s)
        )
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({consumer, enforcer, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        stop.set()
        await grpc_server.set_serving(False)
        await asyncio.wait_for(consumer, 30)  # the batch in hand commits and is acked
        for task in (enforcer, health):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        if grpc_server is not None:
            await grpc_server.stop(2)
        if bus_access is not None:
            await bus_access.close()
        await bus.close()
        await pool.close()


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
        app = SessionService(projection, _Silent(), SystemClock(), settings.stall_timeout)
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
