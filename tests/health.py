"""Waiting for a service process to serve: its grpc.health.v1 Watch stream says SERVING (an event, no polling)."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def await_serving(port: int, within: float) -> None:
    """Return once the server on 127.0.0.1:`port` reports SERVING; time out after `within` seconds per step."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), within)
        stub = health_pb2_grpc.HealthStub(channel)

        async def watch() -> None:
            async for update in stub.Watch(health_pb2.HealthCheckRequest(service="")):
                if update.status == health_pb2.HealthCheckResponse.SERVING:
                    return

        await asyncio.wait_for(watch(), within)
