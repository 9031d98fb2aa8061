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
from services.discovery.application import Access, Catalog, Planner, Scheduler, SystemClock, republish_revocations
from services.discovery.compare import LiveCompare, SalesforceLive, StorageBackup, org_reserve
from services.discovery.config import DiscoverySettings
from services.discovery.consumers import consume_job_outcomes, consume_session_requests, outcomes_caught_up
from services.discovery.ports import Clock, Connector
from services.discovery.salesforce import SalesforceOrg
from services.discovery.session_client import GrpcSessionStarter
from services.discovery.storage_client import StorageExports, check_storage
from services.discovery.store import DiscoveryStore, ScheduleRuns
from services.discovery.store_tokens import TokenStore
from services.platform import serving
from services.platform.auth import aio_channel, load_key
from services.platform.grpcserver import GrpcServer

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
    # the backup at a point compared with the org now: reads the org (counted against its API budget)
    "CompareLive": "viewer",
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
    async with serving.runtime("discovery", settings, ROLES, database_wait_s=DATABASE_WAIT_S) as running:
        bus, access = running.bus, running.access
        assert access is not None
        store = DiscoveryStore(running.pool, settings.discovery_db_schema)
        await store.setup()
        tokens = TokenStore(running.pool, settings.discovery_db_schema)
        await republish_revocations(tokens, access.feed)
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
            split_records=settings.discovery_split_records,
            plan_timeout=dt.timedelta(seconds=settings.discovery_plan_timeout_s),
            outcomes_recorded=functools.partial(outcomes_caught_up, bus),
        )
        storage = StorageExports(
            aio_channel(
                settings.storage_addr,
                settings.own_token("discovery"),
                settings.channel_credentials(),
                options=[("grpc.max_receive_message_length", 64 << 20)],
            )
        )
        planner.pin_point = storage.pin_point  # a restore draft's point, pinned against retention when planned
        discovery_service = discovery_pb2.DESCRIPTOR.services_by_name["DiscoveryService"].full_name
        server = await running.serve_grpc(
            [
                (
                    discovery_pb2_grpc.add_DiscoveryServiceServicer_to_server,
                    DiscoveryApi(
                        catalog := Catalog(store, connect, storage.backup_ids),
                        LiveCompare(
                            catalog.get_org,
                            lambda c, reserve: SalesforceLive(connect(c), reserve_percent=reserve),
                            StorageBackup(storage.stub),
                            functools.partial(org_reserve, store.list_policies),
                        ),
                    ),
                    discovery_service,
                ),
                access_service_entry(AccessApi(Access(key, tokens, access.feed, access.audit))),
            ],
            settings.discovery_port,
        )
        await serving.announce_ready(on_ready, server, planner)
        consumer = asyncio.create_task(consume_session_requests(bus, planner, stop, settings.discovery_ack_wait_s))
        outcomes = asyncio.create_task(consume_job_outcomes(bus, store, stop))

        async def database_answers() -> bool:
            await store.ping()
            return True

        health = running.watch_health(stop, database_answers)
        starter = GrpcSessionStarter(
            settings.session_addr, settings.own_token("discovery"), settings.channel_credentials()
        )
        scheduler = Scheduler(store, ScheduleRuns(store), starter, SystemClock())
        scheduling = asyncio.create_task(_schedule_forever(scheduler, settings.scheduler_interval_s, stop))
        await serving.until_stopped(stop, [consumer, outcomes, health, scheduling])
        await server.set_serving(False)
        # the plan in hand commits and is acked; one still running after the drain is handed back (redelivered)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consumer, SHUTDOWN_DRAIN_S)
        await asyncio.wait_for(outcomes, 30)
        await serving.cancel(health, scheduling)
        await starter.close()


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
