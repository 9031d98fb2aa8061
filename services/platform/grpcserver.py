"""An asyncio gRPC server with grpc.health.v1 health and server reflection, as every service runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.platform import telemetry
from services.platform.validation import RequestValidator

log = logging.getLogger(__name__)


@dataclass
class GrpcServer:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    service_names: tuple[str, ...]

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def stop(self, grace_s: float = 5.0) -> None:
        await self.set_serving(False)
        await self.server.stop(grace_s)


async def start_grpc_server(
    registrations: Iterable[tuple[Callable[[Any, grpc.aio.Server], None], Any, str]],
    *,
    port: int,
    host: str = "0.0.0.0",
    interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> GrpcServer:
    """Start a server with the given (add_XServicer_to_server, servicer, full service name) registrations.

    `options` are gRPC channel arguments, e.g. ("grpc.max_receive_message_length", n).
    Health starts NOT_SERVING; the caller flips it once its dependencies are reachable. Every call but
    health and reflection gets a SERVER span (the tracing interceptor runs first, so refused calls show too).
    Every request is checked against the limits of its type (services.platform.validation) after the given
    interceptors (authentication first: a caller without a token learns nothing of the limits), and a
    request that is not valid protobuf is INVALID_ARGUMENT, not UNKNOWN.
    """
    # no SO_REUSEPORT (gRPC sets it by default): a second server on a port in use must fail to bind, not share
    # the port and receive a share of another service's calls ("Method not found")
    server = grpc.aio.server(
        interceptors=[*telemetry.server_interceptors(), *interceptors, RequestValidator()],
        options=[("grpc.so_reuseport", 0), *options],
    )
    names: list[str] = []
    for add, servicer, name in registrations:
        add(servicer, server)
        names.append(name)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    await server.start()
    result = GrpcServer(server, health_servicer, bound, tuple(names))
    await result.set_serving(False)
    return result


async def watch_health(
    server: GrpcServer,
    checks: Iterable[Callable[[], Awaitable[bool]]],
    stop: asyncio.Event,
    interval_s: float = 5.0,
) -> None:
    """Keep health SERVING only while every dependency check passes (database answers, NATS connected)."""
    serving = True
    while not stop.is_set():
        ok = True
        for check in checks:
            try:
                ok = ok and bool(await asyncio.wait_for(check(), interval_s))
            except Exception:
                ok = False
        if ok != serving and not stop.is_set():
            log.warning("%s", "serving again" if ok else "not serving: a dependency is unreachable")
            await server.set_serving(ok)
            serving = ok
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
