"""Composition root of the discovery service: wires the store, the bus, Salesforce, storage's health
probe and the gRPC API. `serve` runs until `stop` is set (SIGTERM in __main__), then lets the plan in hand
commit and be acked, and exits."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable

from sfvault.discovery.v1 import discovery_pb2, discovery_pb2_grpc

from services.discovery.api import AccessApi, DiscoveryApi, access_service_entry
from services.discovery.application import Catalog, Planner, Scheduler, SystemClock, republish_revocations
from services.discovery.config import DiscoverySettings
from services.discovery.consumers import consume_job_outcomes, consume_session_requests
from services.discovery.ports import Clock, Connector
from services.discovery.salesforce import SalesforceOrg
from services.discovery.session_client import GrpcSessionStarter
from services.discovery.storage_client import StorageExports, check_storage
from services.discovery.store import DiscoveryStore, ScheduleRuns
from services.discovery.store_tokens import TokenStore
from services.platform import db
from services.platform.auth import BusAccess, aio_channel, load_key
from services.platform.bus import Bus
from services.platform.grpcserver import GrpcServer, start_grpc_server, watch_health

log = logging.getLogger("sfvault.discovery")
# how long a call waits for a database connection: longer means PostgreSQL is away, and the caller is better
# served by UNAVAILABLE (and the loops by their next round) than by a long wait
DATABASE_WAIT_S = 5.0
SHUTDOWN_DRAIN_S = 30.0
ROLES = {
    "GetOrg": "viewer",
    "ListOrgs": "viewer",
    "GetPolicy": "viewer",
    "ListPolicies": "viewer",
    "GetSessionPlan": "viewer",
    "TestOrg": "operator",
    "VerifyOrg": "operator",
    # Create*, Update*, Delete*: admin (the default)
}


async def serve(
    settings: DiscoverySettings,
    stop: asyncio.Event,
    *,
    connect: Connector = SalesforceOrg,
    clock: Clock | None = None,
    on_ready: Callable[[GrpcServer, Planner], Awaitable[None] | None] | None = None,
) -> None:
    pool = await db.open_pool(settings.database_url, timeout_s=DATABASE_WAIT_S)
    bus = await Bus.connect(settings.bus_config(), producer="discovery")
    grpc_server: GrpcServer | None = None
    bus_access: BusAccess | None = None
    try:
        store = DiscoveryStore(pool, settings.discovery_db_schema)
        await store.setup()
        interceptors = settings.auth_interceptors(ROLES)
        bus_access = await BusAccess.attach(interceptors, bus, "discovery")  # revocations and the audit
        tokens = TokenStore(pool, settings.discovery_db_schema)
        await republish_revocations(tokens, bus_access.feed)
        key = b"" if settings.auth_disabled or not settings.auth_key else load_key(settings.auth_key)
        planner = Planner(
            store,
            connect,
            functools.partial(
                check_storage,
                settings.storage_addr,
                settings.storage_check_timeout_s,
                settings.channel_credentials(),
            ),
            bus,
            clock or SystemClock(),
            max_deliver=bus.config.max_deliver,
            full_describe_every=dt.timedelta(seconds=settings.discovery_full_describe_every_s),
            describe_parallel=settings.discovery_describe_parallel,
            plan_timeout=dt.timedelta(seconds=settings.discovery_plan_timeout_s),
        )
        storage = StorageExports(
            aio_channel(
                settings.storage_addr,
                settings.own_token("discovery"),
                settings.channel_credentials(),
                options=[("grpc.max_receive_message_length", 64 << 20)],
            )
        )
        grpc_server = await start_grpc_server(
            [
                (
                    discovery_pb2_grpc.add_DiscoveryServiceServicer_to_server,
                    DiscoveryApi(Catalog(store, connect, storage.backup_ids), store),
                    discovery_pb2.DESCRIPTOR.services_by_name["DiscoveryService"].full_name,
                ),
                access_service_entry(AccessApi(key, tokens, bus_access.feed, bus_access.audit)),
            ],
            port=settings.discovery_port,
            interceptors=interceptors,
            credentials=settings.server_credentials(),
        )
        await grpc_server.set_serving(True)
        log.info("discovery serving on port %d", grpc_server.port)
        if on_ready is not None:
            result = on_ready(grpc_server, planner)
            if asyncio.iscoroutine(result):
                await result
        consumer = asyncio.create_task(consume_session_requests(bus, planner, stop, settings.discovery_ack_wait_s))
        outcomes = asyncio.create_task(consume_job_outcomes(bus, store, stop))

        async def database_answers() -> bool:
            await store.ping()
            return True

        async def nats_connected() -> bool:
            return bool(bus.nc.is_connected)

        health = asyncio.create_task(
            watch_health(grpc_server, [database_answers, nats_connected], stop, settings.health_check_interval_s)
        )
        starter = GrpcSessionStarter(
            settings.session_addr, settings.own_token("discovery"), settings.channel_credentials()
        )
        scheduler = Scheduler(store, ScheduleRuns(store), starter, SystemClock())
        scheduling = asyncio.create_task(_schedule_forever(scheduler, settings.scheduler_interval_s, stop))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait(
            {consumer, outcomes, health, scheduling, stopped}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task is not stopped and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        stop.set()
        await grpc_server.set_serving(False)
        # the plan in hand commits and is acked; one still running after the drain is handed back (redelivered)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consumer, SHUTDOWN_DRAIN_S)
        await asyncio.wait_for(outcomes, 30)
        for task in (health, scheduling):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await starter.close()
    finally:
        if grpc_server is not None:
            await grpc_server.stop(2)
        if bus_access is not None:
            await bus_access.close()
        await bus.close()
        await pool.close()


async def _schedule_forever(scheduler: Scheduler, interval_s: float, stop: asyncio.Event) -> None:
    if interval_s <= 0:
        await stop.wait()
        return
    while not stop.is_set():
        try:
            await scheduler.tick()
        except Exception:
            log.exception("scheduling round failed; retrying next round")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
