"""The services' gRPC server: a port in use is an error, never a port shared with another service; every
request is checked at the door (garbage, long strings, bad ids, numbers, enums and timestamps out of range ->
INVALID_ARGUMENT before the servicer runs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sfvault.session.v1 import session_pb2, session_pb2_grpc
from sfvault.storage.v1 import storage_pb2, storage_pb2_grpc

from devstack.embedded import free_ports
from services.platform.grpcserver import start_grpc_server


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


# ---- every request checked at the door (services.platform.validation) ---------------------------------------


class _Sessions(session_pb2_grpc.SessionServiceServicer):
    """Records what reaches the servicer: a refused request must never get here."""

    def __init__(self) -> None:
        self.seen: list[Message] = []

    async def StartSession(self, request: session_pb2.StartSessionRequest, context: Any) -> session_pb2.Session:
        self.seen.append(request)
        return session_pb2.Session(session_id=request.session_id)

    async def ListSessions(
        self, request: session_pb2.ListSessionsRequest, context: Any
    ) -> session_pb2.ListSessionsResponse:
        self.seen.append(request)
        return session_pb2.ListSessionsResponse()

    async def WatchSession(self, request: session_pb2.WatchSessionRequest, context: Any) -> AsyncIterator[Any]:
        self.seen.append(request)
        yield session_pb2.Session(session_id=request.session_id)


class _Storage(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self) -> None:
        self.seen: list[Message] = []

    async def UploadFile(self, request_iterator: AsyncIterator[Any], context: Any) -> storage_pb2.UploadFileResponse:
        async for part in request_iterator:
            self.seen.append(part)
        return storage_pb2.UploadFileResponse(size=len(self.seen))

    async def ListMetadataVersions(
        self, request: storage_pb2.ListMetadataVersionsRequest, context: Any
    ) -> storage_pb2.ListMetadataVersionsResponse:
        self.seen.append(request)
        return storage_pb2.ListMetadataVersionsResponse()


@pytest.fixture
async def served() -> AsyncIterator[tuple[grpc.aio.Channel, _Sessions, _Storage]]:
    sessions, storage = _Sessions(), _Storage()  # type: ignore[abstract]
    server = await start_grpc_server(
        [
            (session_pb2_grpc.add_SessionServiceServicer_to_server, sessions, "sfvault.session.v1.SessionService"),
            (storage_pb2_grpc.add_StorageServiceServicer_to_server, storage, "sfvault.storage.v1.StorageService"),
        ],
        port=0,
        host="127.0.0.1",
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield channel, sessions, storage
    finally:
        await channel.close()
        await server.stop(0)


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def _raw(channel: grpc.aio.Channel, path: str) -> Any:
    """A method sent as raw bytes: what a client with a broken or hostile encoder sends."""
    return channel.unary_unary(path, request_serializer=None, response_deserializer=None)


async def test_a_request_that_is_not_protobuf_is_invalid_argument(served: Any) -> None:
    channel, sessions, _ = served
    # a field of wire type 7 (none exists), and a string field holding invalid UTF-8
    for garbage in (b"\xff\xff\xff\xff", b"\x0f", b"\x2a\x02\xc3\x28"):
        code, details = await _code(_raw(channel, "/sfvault.session.v1.SessionService/StartSession")(garbage))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (garbage, code)
        assert "not a valid sfvault.session.v1.StartSessionRequest" in details
    assert sessions.seen == []


async def test_a_5000_character_session_id_is_refused_before_the_service(served: Any) -> None:
    channel, sessions, _ = served
    stub = session_pb2_grpc.SessionServiceStub(channel)
    code, details = await _code(stub.StartSession(session_pb2.StartSessionRequest(session_id="s" * 5000)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "session_id is longer than 200 characters (5000)"
    code, details = await _code(stub.StartSession(session_pb2.StartSessionRequest(session_id="a.b")))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "session_id must be letters, digits, '_' and '-'")
    code, details = await _code(stub.StartSession(session_pb2.StartSessionRequest(trigger="x" * 100_000)))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "trigger is longer than 1000 characters (100000)")
    assert sessions.seen == []
    reply = await stub.StartSession(session_pb2.StartSessionRequest(session_id="s-1_A", trigger="manual"))
    assert reply.session_id == "s-1_A" and len(sessions.seen) == 1


async def test_numbers_enums_and_timestamps_out_of_range_are_invalid_argument(served: Any) -> None:
    channel, sessions, storage = served
    stub = session_pb2_grpc.SessionServiceStub(channel)
    bad = [
        session_pb2.ListSessionsRequest(page_size=-1),
        session_pb2.ListSessionsRequest(page_size=2**31 - 1),
        session_pb2.ListSessionsRequest(status=99),  # type: ignore[arg-type]
        session_pb2.ListSessionsRequest(requested_after=Timestamp(seconds=-(2**62))),
        session_pb2.ListSessionsRequest(requested_before=Timestamp(seconds=0, nanos=-1)),
    ]
    for request in bad:
        code, _ = await _code(stub.ListSessions(request))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, request
    code, details = await _code(stub.StartSession(session_pb2.StartSessionRequest(stall_timeout=Duration(seconds=-5))))
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "stall_timeout must be a duration from zero to 3650 days",
    )
    code, details = await _code(
        storage_pb2_grpc.StorageServiceStub(channel).ListMetadataVersions(
            storage_pb2.ListMetadataVersionsRequest(org_id="00D000000000001AAA", limit=-1)
        )
    )
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "limit must be from 0 to 10000, not -1")
    assert sessions.seen == [] and storage.seen == []
    await stub.ListSessions(session_pb2.ListSessionsRequest(page_size=50, requested_after=Timestamp(seconds=1)))
    assert len(sessions.seen) == 1


async def test_streams_are_checked_message_by_message(served: Any) -> None:
    channel, sessions, storage = served
    watch = session_pb2_grpc.SessionServiceStub(channel).WatchSession(
        session_pb2.WatchSessionRequest(session_id="x" * 201)
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in watch:
            pass
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sessions.seen == []

    upload = channel.stream_unary("/sfvault.storage.v1.StorageService/UploadFile", None, None)
    header = storage_pb2.UploadFileRequest(header=storage_pb2.FileHeader(record_id="068000000000001AAA", size=3))
    body = storage_pb2.UploadFileRequest(data=b"abc")
    code, details = await _code(upload(iter([header.SerializeToString(), b"\xff\xff"])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "the request is not a valid sfvault.storage.v1.UploadFileRequest message (protobuf)"
    bad_header = storage_pb2.UploadFileRequest(header=storage_pb2.FileHeader(record_id="../../etc/passwd"))
    code, details = await _code(upload(iter([bad_header.SerializeToString()])))
    assert details == "header.record_id must be a Salesforce Id: 15 or 18 letters and digits"
    assert [p.WhichOneof("part") for p in storage.seen] == ["header"]  # the stream stopped at the bad message
    reply = await storage_pb2_grpc.StorageServiceStub(channel).UploadFile(iter([header, body]))
    assert reply.size == 3


async def test_health_answers_garbage_with_invalid_argument(served: Any) -> None:
    channel, _, _ = served
    code, _ = await _code(_raw(channel, "/grpc.health.v1.Health/Check")(b"\xff\xff"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
