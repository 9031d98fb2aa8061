"""The services' gRPC server: a port in use is an error, never a port shared with another service."""

from __future__ import annotations

import pytest

from services.common.embedded import free_ports
from services.common.grpcserver import start_grpc_server


def test_free_ports_are_distinct() -> None:
    ports = free_ports(50)
    assert len(set(ports)) == 50


async def test_a_second_server_on_a_port_in_use_fails_to_start() -> None:
    # gRPC's default SO_REUSEPORT let two services bind one port and split its calls ("Method not found")
    first = await start_grpc_server([], port=0, host="127.0.0.1")
    try:
        with pytest.raises(RuntimeError):
            await start_grpc_server([], port=first.port, host="127.0.0.1")
    finally:
        await first.stop(0)
