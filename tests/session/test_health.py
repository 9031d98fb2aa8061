"""Health says SERVING only while the service's dependencies are reachable."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.embedded import nats_server
from services.session import service
from tests.session.conftest import session_settings

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


async def test_not_serving_while_nats_is_gone(database_url: str) -> None:
    with contextlib.ExitStack() as nats:
        url = nats.enter_context(nats_server())
        settings = session_settings(database_url, url, "", health_check_interval_s=0.1)
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            service.serve(settings, stop, on_ready=lambda server, app: ready.set_result(server.port))
        )
        port = await asyncio.wait_for(ready, 30)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
                updates = stream.__aiter__()
                assert (await asyncio.wait_for(updates.__anext__(), 10)).status == SERVING
                nats.close()  # NATS goes away under the running service
                assert (await asyncio.wait_for(updates.__anext__(), 20)).status == NOT_SERVING
                stream.cancel()
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
