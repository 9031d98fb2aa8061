"""What every service's composition root does around its own wiring: open the database pool and the bus,
follow token revocations and audit (BusAccess), serve gRPC with health, watch its dependencies, run its loops
until `stop` or until one of them fails, then drain and close everything in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from services.platform import db
from services.platform.auth import BusAccess
from services.platform.bus import Bus
from services.platform.grpcserver import GrpcServer, start_grpc_server, watch_health
from services.platform.settings import ServiceSettings

log = logging.getLogger("sfvault.serving")
HealthCheck = Callable[[], Awaitable[bool]]


@dataclass
class Runtime:
    """The resources a service holds while it runs; `runtime()` opens and closes them."""

    name: str
    settings: ServiceSettings
    pool: AsyncConnectionPool
    bus: Bus
    interceptors: list[Any]
    access: BusAccess | None = None
    server: GrpcServer | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def serve_grpc(self, registrations: Sequence[tuple[Any, Any, str]], port: int) -> GrpcServer:
        """Start the gRPC server (health and reflection included) and mark it SERVING."""
        self.server = await start_grpc_server(
            registrations,
            port=port,
            interceptors=self.interceptors,
            credentials=self.settings.server_credentials(),
        )
        await self.server.set_serving(True)
        log.info("%s serving on port %d", self.name, self.server.port)
        return self.server

    def watch_health(self, stop: asyncio.Event, database_answers: HealthCheck) -> asyncio.Task[None]:
        """Health SERVING only while the database answers and NATS is connected."""
        assert self.server is not None
        return watch_dependencies(self.server, stop, database_answers, self.bus, self.settings.health_check_interval_s)


def watch_dependencies(
    server: GrpcServer, stop: asyncio.Event, database_answers: HealthCheck, bus: Bus | None, interval_s: float = 5.0
) -> asyncio.Task[None]:
    """A task keeping the server's health SERVING only while the database answers and NATS is connected (no
    bus: only the database counts)."""

    async def nats_connected() -> bool:
        return bus is None or bool(bus.nc.is_connected)

    return asyncio.create_task(watch_health(server, [database_answers, nats_connected], stop, interval_s))


@contextlib.asynccontextmanager
async def runtime(
    name: str, settings: ServiceSettings, roles: dict[str, str], *, database_wait_s: float
) -> AsyncIterator[Runtime]:
    """The database pool (a call waits at most `database_wait_s` for a connection), the bus as the service's
    producer, its authentication with revocations and audit followed; on exit the gRPC server stops (2 s
    grace), then the rest closes."""
    pool = await db.open_pool(settings.database_url, timeout_s=database_wait_s)
    try:
        bus = await Bus.connect(settings.bus_config(), producer=name)
    except BaseException:
        await pool.close()
        raise
    running = Runtime(name, settings, pool, bus, settings.auth_interceptors(roles))
    try:
        running.access = await BusAccess.attach(running.interceptors, bus, name)  # revocations and the audit
        yield running
    finally:
        if running.server is not None:
            await running.server.stop(2)
        if running.access is not None:
            await running.access.close()
        await bus.close()
        await pool.close()


async def until_stopped(stop: asyncio.Event, tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Wait until `stop` is set or one of the tasks ends; a task that failed raises its error here. Sets `stop`
    either way, so every loop winds down."""
    stopped = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({*tasks, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        stopped.cancel()


async def cancel(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def announce_ready(on_ready: Callable[..., Awaitable[None] | None] | None, *args: Any) -> None:
    """Call a test's `on_ready(server, application)` hook, awaiting it if it is a coroutine."""
    if on_ready is None:
        return
    result = on_ready(*args)
    if asyncio.iscoroutine(result):
        await result
