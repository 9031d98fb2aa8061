"""Discovery's adapter to storage: its gRPC health, checked before a session is planned, and the Ids of an
object's latest backup (its export), which `verify` compares with the org."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import grpc
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sfvault.storage.v1 import storage_pb2, storage_pb2_grpc

from services.discovery.ports import StorageUnreachable
from services.platform import errors


async def check_storage(address: str, timeout_s: float = 5.0, credentials: Any = None) -> None:
    """Storage's grpc.health.v1 must say SERVING; raises StorageUnreachable with the reason otherwise."""
    if not address:
        raise StorageUnreachable("no storage address is configured (SFVAULT_STORAGE_ADDR)")
    try:
        channel_ = grpc.aio.secure_channel(address, credentials) if credentials else grpc.aio.insecure_channel(address)
        async with channel_ as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
    except grpc.aio.AioRpcError as exc:
        raise StorageUnreachable(f"storage at {address} is unreachable ({exc.code().name})") from None
    except TimeoutError:
        raise StorageUnreachable(f"storage at {address} did not answer within {timeout_s:.0f} s") from None
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        raise StorageUnreachable(f"storage at {address} is not serving ({status})")


class StorageExports:
    """Storage's StorageService, over a channel carrying discovery's own token."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = storage_pb2_grpc.StorageServiceStub(channel)

    async def backup_ids(self, salesforce_org_id: str, object_name: str) -> set[str]:
        """The Ids live in the latest backup of an object (storage's JSON-lines export)."""
        request = storage_pb2.ExportObjectAsOfRequest(
            org_id=salesforce_org_id, object_name=object_name, format=storage_pb2.EXPORT_FORMAT_JSONL
        )
        ids: set[str] = set()
        try:
            async for chunk in self.stub.ExportObjectAsOf(request):
                ids.update(orjson.loads(line)["Id"] for line in chunk.data.splitlines() if line.strip())
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return ids  # never backed up: every live record is missing
            raise errors.Unavailable(f"storage could not export {object_name}: {exc.code().name}") from None
        return ids

    async def pin_point(
        self, salesforce_org_id: str, at: dt.datetime, objects: Sequence[str], reason: str, session_id: str
    ) -> None:
        """A restore point pinned against retention (storage's PinRestorePoint; the same pin twice is one)."""
        request = storage_pb2.PinRestorePointRequest(
            org_id=salesforce_org_id, reason=reason, session_id=session_id, objects=list(objects)
        )
        request.at.FromDatetime(at)
        try:
            await self.stub.PinRestorePoint(request, timeout=10.0)
        except grpc.aio.AioRpcError as exc:
            raise errors.Unavailable(f"storage could not pin {at.isoformat()}: {exc.code().name}") from None
