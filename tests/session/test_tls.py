"""gRPC over TLS is a setting: with SFVAULT_TLS_CERT_FILE/KEY_FILE the service speaks only TLS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from sfvault.session.v1 import session_pb2 as api
from sfvault.session.v1 import session_pb2_grpc

from services.platform.auth import aio_channel
from services.platform.settings import channel_credentials
from services.session import service
from sforg.tls import ensure_certificates
from tests.auth import token
from tests.session.conftest import session_settings


async def test_tls_only(database_url: str, nats_url: str, bus_namespace: str, tmp_path: Path) -> None:
    ca, cert, key = ensure_certificates(tmp_path)  # a CA and a server certificate for localhost / 127.0.0.1
    settings = session_settings(database_url, nats_url, bus_namespace, tls_cert_file=str(cert), tls_key_file=str(key))
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        service.serve(settings, stop, on_ready=lambda server, app: ready.set_result(server.port))
    )
    port = await asyncio.wait_for(ready, 30)
    try:
        async with aio_channel(f"localhost:{port}", token("viewer"), channel_credentials(str(ca))) as secure:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await session_pb2_grpc.SessionServiceStub(secure).GetSession(api.GetSessionRequest(session_id="x"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND  # through TLS and auth to the service
        async with aio_channel(f"localhost:{port}", token("viewer")) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await session_pb2_grpc.SessionServiceStub(plain).GetSession(
                    api.GetSessionRequest(session_id="x"), timeout=5
                )
            assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
