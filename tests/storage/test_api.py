"""The gRPC API end to end, in-process: real PostgreSQL, real NATS, local file repository. Error codes, a
file round trip, a streamed export, health, and ChunkUploaded observed on JetStream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sfvault.events.v1 import events_pb2
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.storage.v1 import storage_pb2 as pb
from sfvault.storage.v1 import storage_pb2_grpc

from services.canonical import CANONICAL_RULES, FieldDef, FieldType, ObjectSchema, RecordCanonicalizer
from services.platform import events
from services.platform.auth import aio_channel
from services.platform.bus import Bus, BusConfig
from services.storage import config, service
from tests.auth import AUTH_KEY, token
from tests.storage.conftest import DATA, FILE, ORG, account, columns_of, sf_id

pytestmark = pytest.mark.integration

SCHEMA = pb.ObjectSchema(
    object_name="Account",
    key_prefix="001",
    fields=[
        pb.FieldSchema(name="Id", type=pb.FIELD_TYPE_ID),
        pb.FieldSchema(name="Name", type=pb.FIELD_TYPE_STRING),
        pb.FieldSchema(name="AnnualRevenue", type=pb.FIELD_TYPE_DOUBLE),
        pb.FieldSchema(name="SystemModstamp", type=pb.FIELD_TYPE_DATETIME),
        pb.FieldSchema(name="Score__c", type=pb.FIELD_TYPE_DOUBLE, calculated=True),
    ],
)
CANONICALIZER = RecordCanonicalizer(
    ObjectSchema("Account", tuple(FieldDef(f.name, FieldType(f.type), f.calculated) for f in SCHEMA.fields), "001")
)


def chunk(raws: list[bytes]) -> dict[str, Any]:
    """PutRecordsRequest's fields for these records as the jobrunner sends them: canonical, column by column."""
    parts = [CANONICALIZER.parts(json.loads(raw), i) for i, raw in enumerate(raws)]
    return {"canonical_columns": columns_of(parts), "canonical_rules": CANONICAL_RULES}


@pytest.fixture
async def stub(
    database_url: str, nats_url: str, bus_namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[storage_pb2_grpc.StorageServiceStub]:
    monkeypatch.setenv("SFVAULT_DATABASE_URL", database_url)
    monkeypatch.setenv("SFVAULT_NATS_URL", nats_url)
    monkeypatch.setenv("SFVAULT_BUS_NAMESPACE", bus_namespace)
    monkeypatch.setenv("SFVAULT_STORAGE_PORT", "0")
    monkeypatch.setenv("SFVAULT_FILE_REPOSITORY", f"file://{tmp_path / 'files'}")
    monkeypatch.setenv("SFVAULT_STORAGE_MAX_CHUNK_RECORDS", "100")
    monkeypatch.setenv("SFVAULT_AUTH_KEY", AUTH_KEY.decode())
    running = await service.start(config.load())
    channel = aio_channel(f"127.0.0.1:{running.port}", token("service", "jobrunner"))
    try:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        stub.test_channel = channel  # type: ignore[attr-defined]
        stub.test_port = running.port  # type: ignore[attr-defined]
        yield stub
    finally:
        await channel.close()
        await running.stop(1)


def test_a_missing_setting_stops_start_up_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFVAULT_DATABASE_URL", raising=False)
    monkeypatch.setenv("SFVAULT_NATS_URL", "nats://x")
    with pytest.raises(config.ConfigError, match="SFVAULT_DATABASE_URL: is required"):
        config.load()


async def _code(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        assert exc.details(), "every refusal says why"
        return exc.code()
    raise AssertionError("the call succeeded")


async def test_chunks_files_reads_and_the_chunk_uploaded_event(
    stub: storage_pb2_grpc.StorageServiceStub, nats_url: str, bus_namespace: str
) -> None:
    await stub.BeginJob(pb.BeginJobRequest(org_id=ORG, session_id="s1", job_id="j1", type=DATA, object_name="Account"))
    await stub.PutObjectSchema(pb.PutObjectSchemaRequest(org_id=ORG, session_id="s1", schema=SCHEMA))
    put = pb.PutRecordsRequest(
        org_id=ORG,
        session_id="s1",
        job_id="j1",
        chunk_seq=1,
        object_name="Account",
        **chunk([account(1), account(2, AnnualRevenue="3.0")]),
    )
    result = await stub.PutRecords(put)
    assert (result.counts.received, result.counts.new_versions) == (2, 2)
    assert (await stub.PutRecords(put)).replayed

    # ChunkUploaded is on JetStream once, with the deterministic id, despite the redelivery
    bus = await Bus.connect(BusConfig(nats_url, namespace=bus_namespace), producer="test")
    try:
        sub = await bus.pull_subscription(
            bus.config.events_stream, "observer", bus.config.events_subject("s1.ChunkUploaded")
        )
        [msg] = await sub.fetch(1, timeout=10)
        env = events.decode(msg.data)
        assert env.event_id == events.event_id("ChunkUploaded", "s1", "j1", 1)
        assert env.chunk_uploaded.chunk_seq == 1 and env.chunk_uploaded.counts.new_versions == 2
        info = await bus.js.stream_info(bus.config.events_stream)
        assert info.state.messages == 1
    finally:
        await bus.close()

    begun = await stub.BeginJob(
        pb.BeginJobRequest(org_id=ORG, session_id="s1", job_id="j1", type=DATA, object_name="Account")
    )
    assert begun.last_chunk_seq == 1 and begun.counts.new_versions == 2

    history = await stub.GetRecordHistory(
        pb.GetRecordHistoryRequest(org_id=ORG, object_name="Account", record_id=sf_id("001", 2))
    )
    [v] = history.versions
    assert json.loads(v.values_json)["AnnualRevenue"] == 3 and v.session_id == "s1"
    as_of = await stub.GetRecordAsOf(pb.GetRecordAsOfRequest(org_id=ORG, object_name="Account", record_id=v.record_id))
    assert as_of.version_id == v.version_id

    export = b"".join(
        [
            c.data
            async for c in stub.ExportObjectAsOf(
                pb.ExportObjectAsOfRequest(org_id=ORG, object_name="Account", format=pb.EXPORT_FORMAT_CSV)
            )
        ]
    )
    assert export.decode().splitlines()[0] == "Id,Name,AnnualRevenue,SystemModstamp,Score__c"
    assert len(export.decode().splitlines()) == 3
    points = await stub.ListRestorePoints(pb.ListRestorePointsRequest(org_id=ORG))
    assert [p.session_id for p in points.restore_points] == ["s1"]

    await stub.BeginJob(pb.BeginJobRequest(org_id=ORG, session_id="s1", job_id="f1", type=FILE))
    body = b"%PDF" + bytes(range(256)) * 4000

    async def upload() -> AsyncIterator[pb.UploadFileRequest]:
        header = pb.FileHeader(
            org_id=ORG,
            session_id="s1",
            job_id="f1",
            chunk_seq=1,
            object_name="ContentVersion",
            record_id=sf_id("068", 1),
            size=len(body),
            file_name="x.pdf",
        )
        yield pb.UploadFileRequest(header=header)
        for i in range(0, len(body), 65536):
            yield pb.UploadFileRequest(data=body[i : i + 65536])

    uploaded = await stub.UploadFile(upload())
    assert uploaded.new_version and uploaded.size == len(body)
    parts = [
        p
        async for p in stub.GetFile(
            pb.GetFileRequest(org_id=ORG, object_name="ContentVersion", record_id=sf_id("068", 1))
        )
    ]
    assert parts[0].file.file_name == "x.pdf" and b"".join(p.data for p in parts[1:]) == body

    async def no_header() -> AsyncIterator[pb.UploadFileRequest]:
        yield pb.UploadFileRequest(data=b"x")

    assert await _code(stub.UploadFile(no_header())) == grpc.StatusCode.INVALID_ARGUMENT


async def test_bad_input_gets_a_precise_status_never_internal(stub: storage_pb2_grpc.StorageServiceStub) -> None:
    other_org = sf_id("00D", 77)
    record = pb.GetRecordHistoryRequest(org_id=ORG, object_name="Account", record_id=sf_id("001", 1))
    assert await _code(stub.GetRecordHistory(record)) == grpc.StatusCode.NOT_FOUND  # unknown org
    await stub.BeginJob(pb.BeginJobRequest(org_id=ORG, session_id="s1", job_id="j1", type=DATA, object_name="Account"))
    await stub.PutObjectSchema(pb.PutObjectSchemaRequest(org_id=ORG, session_id="s1", schema=SCHEMA))

    def one(**column: bytes) -> pb.CanonicalColumns:
        """A one-record chunk's columns, one of them replaced."""
        good = chunk([account(1)])["canonical_columns"]
        return pb.CanonicalColumns(**{f: getattr(good, f) for f in ("record_ids", "values", "other_values",
                                      "system_modstamps", "deleted")} | column)  # fmt: skip

    def put(**kw: object) -> pb.PutRecordsRequest:
        base: dict[str, object] = dict(
            org_id=ORG, session_id="s1", job_id="j1", chunk_seq=1, object_name="Account", **chunk([account(1)])
        )
        return pb.PutRecordsRequest(**{**base, **kw})  # type: ignore[arg-type]

    cases = [
        (stub.PutRecords(put(job_id="unknown")), grpc.StatusCode.FAILED_PRECONDITION),
        (stub.PutRecords(put(**chunk([account(i) for i in range(101)]))), grpc.StatusCode.INVALID_ARGUMENT),
        (stub.PutRecords(put(canonical_columns=one(record_ids=b"001BAD\n"))), grpc.StatusCode.INVALID_ARGUMENT),
        (stub.PutRecords(put(canonical_columns=one(values=b"not json\n"))), grpc.StatusCode.INVALID_ARGUMENT),
        (stub.PutRecords(put(org_id="nonsense")), grpc.StatusCode.INVALID_ARGUMENT),
        (stub.PutRecords(put(session_id="a.b")), grpc.StatusCode.INVALID_ARGUMENT),
        (stub.PutRecords(put(object_name="Bad Name")), grpc.StatusCode.INVALID_ARGUMENT),
        # records made under no rules (or others): their hashes would not compare
        (stub.PutRecords(put(canonical_rules=0)), grpc.StatusCode.FAILED_PRECONDITION),
        (  # columns whose lines do not line up
            stub.PutRecords(
                put(
                    canonical_columns=pb.CanonicalColumns(
                        record_ids=sf_id("001", 1).encode() + b"\n", values=b"{}\n{}\n", deleted=b"\x00"
                    ),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.GetRecordHistory(
                pb.GetRecordHistoryRequest(org_id=other_org, object_name="Account", record_id=sf_id("001", 1))
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            stub.GetRecordHistory(
                pb.GetRecordHistoryRequest(org_id=ORG, object_name="Contact", record_id=sf_id("003", 1))
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            stub.GetRecordHistory(
                pb.GetRecordHistoryRequest(org_id=ORG, object_name="Account", record_id="001000000000001XYZ")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.MarkDeleted(
                pb.MarkDeletedRequest(
                    org_id=ORG,
                    session_id="s1",
                    job_id="j1",
                    chunk_seq=2,
                    object_name="Account",
                    record_ids=[sf_id("001", 1)],
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),  # no state given
        (
            stub.PutObjectSchema(
                pb.PutObjectSchemaRequest(
                    org_id=ORG,
                    session_id="s1",
                    schema=pb.ObjectSchema(object_name="Account", fields=[pb.FieldSchema(name="Name")]),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for call, expected in cases:
        assert await _code(call) == expected


async def test_health_is_serving_once_started(stub: storage_pb2_grpc.StorageServiceStub) -> None:
    health = health_pb2_grpc.HealthStub(stub.test_channel)  # type: ignore[attr-defined]
    reply = await health.Check(health_pb2.HealthCheckRequest(service="sfvault.storage.v1.StorageService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_chunk_larger_than_grpcs_default_message_limit_is_received(
    stub: storage_pb2_grpc.StorageServiceStub,
) -> None:
    # the server takes SFVAULT_STORAGE_MAX_MESSAGE_MB (64) per message, not gRPC's 4 MiB default
    await stub.BeginJob(pb.BeginJobRequest(org_id=ORG, session_id="s1", job_id="big", type=DATA, object_name="Account"))
    await stub.PutObjectSchema(pb.PutObjectSchemaRequest(org_id=ORG, session_id="s1", schema=SCHEMA))
    records = [account(n, "x" * 60_000) for n in range(1, 81)]  # ~4.8 MB
    channel = aio_channel(
        f"127.0.0.1:{stub.test_port}",  # type: ignore[attr-defined]
        token("service", "jobrunner"),
        options=[("grpc.max_send_message_length", 64 << 20)],
    )
    try:
        big = storage_pb2_grpc.StorageServiceStub(channel)
        put = pb.PutRecordsRequest(
            org_id=ORG, session_id="s1", job_id="big", chunk_seq=1, object_name="Account", **chunk(records)
        )
        assert put.ByteSize() > 4 << 20
        result = await big.PutRecords(put)
        assert result.counts.new_versions == 80
    finally:
        await channel.close()


def test_storage_reads_the_bus_settings_every_service_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFVAULT_DATABASE_URL", "postgresql://x/y")
    monkeypatch.setenv("SFVAULT_NATS_URL", "nats://n:4222")
    monkeypatch.setenv("SFVAULT_EVENTS_REPLICAS", "3")
    monkeypatch.setenv("SFVAULT_JOBS_REPLICAS", "3")
    monkeypatch.setenv("SFVAULT_DUPLICATE_WINDOW_S", "600")
    bus = config.load().bus_config()
    assert (bus.url, bus.events_replicas, bus.jobs_replicas, bus.duplicate_window_s) == ("nats://n:4222", 3, 3, 600)


async def test_storage_declares_the_streams_with_the_shared_settings(
    database_url: str, nats_url: str, bus_namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # another service declared the streams with a 10-minute duplicate window; storage's start keeps it
    monkeypatch.setenv("SFVAULT_DATABASE_URL", database_url)
    monkeypatch.setenv("SFVAULT_NATS_URL", nats_url)
    monkeypatch.setenv("SFVAULT_BUS_NAMESPACE", bus_namespace)
    monkeypatch.setenv("SFVAULT_STORAGE_PORT", "0")
    monkeypatch.setenv("SFVAULT_FILE_REPOSITORY", f"file://{tmp_path / 'files'}")
    monkeypatch.setenv("SFVAULT_AUTH_KEY", AUTH_KEY.decode())
    monkeypatch.setenv("SFVAULT_DUPLICATE_WINDOW_S", "600")
    other = await Bus.connect(BusConfig(nats_url, namespace=bus_namespace, duplicate_window_s=600), producer="other")
    running = await service.start(config.load())
    try:
        for stream in (other.config.events_stream, other.config.jobs_stream):
            info = await other.js.stream_info(stream)
            assert info.config.duplicate_window == 600, stream
    finally:
        await running.stop(1)
        await other.close()


async def test_only_the_service_identity_writes_people_get_permission_denied(
    stub: storage_pb2_grpc.StorageServiceStub, database_url: str
) -> None:
    begin = pb.BeginJobRequest(org_id=ORG, session_id="s1", job_id="j1", type=DATA, object_name="Account")
    await stub.BeginJob(begin)  # the jobrunner's service token
    await stub.PutObjectSchema(pb.PutObjectSchemaRequest(org_id=ORG, session_id="s1", schema=SCHEMA))
    await stub.PutRecords(
        pb.PutRecordsRequest(
            org_id=ORG, session_id="s1", job_id="j1", chunk_seq=1, object_name="Account", **chunk([account(1)])
        )
    )
    rid = sf_id("001", 1)
    writes: dict[str, Callable[[storage_pb2_grpc.StorageServiceStub], Any]] = {
        "BeginJob": lambda s: s.BeginJob(
            pb.BeginJobRequest(org_id=ORG, session_id="s2", job_id="j2", type=DATA, object_name="Account")
        ),
        "PutObjectSchema": lambda s: s.PutObjectSchema(
            pb.PutObjectSchemaRequest(org_id=ORG, session_id="s1", schema=SCHEMA)
        ),
        "PutRecords": lambda s: s.PutRecords(
            pb.PutRecordsRequest(
                org_id=ORG, session_id="s1", job_id="j1", chunk_seq=2, object_name="Account", **chunk([account(1, "x")])
            )
        ),
        "MarkDeleted": lambda s: s.MarkDeleted(
            pb.MarkDeletedRequest(
                org_id=ORG,
                session_id="s1",
                job_id="j1",
                chunk_seq=2,
                object_name="Account",
                record_ids=[rid],
                state=pb.DELETED_STATE_HARD,
            )
        ),
        "UploadFile": lambda s: s.UploadFile(
            _upload(pb.FileHeader(org_id=ORG, session_id="s1", job_id="j1", chunk_seq=2, size=1), b"x")
        ),
        "PutMetadata": lambda s: s.PutMetadata(
            pb.PutMetadataRequest(
                org_id=ORG,
                session_id="s1",
                job_id="j1",
                chunk_seq=2,
                components=[pb.MetadataComponent(type="ApexClass", full_name="A", content=b"x")],
            )
        ),
        "RecordRestoreIntent": lambda s: s.RecordRestoreIntent(
            pb.RecordRestoreIntentRequest(
                org_id=ORG, session_id="s1", job_id="j1", batch_key="k", object_name="Account", source_ids=[rid]
            )
        ),
        "PutRestoreOutcomes": lambda s: s.PutRestoreOutcomes(
            pb.PutRestoreOutcomesRequest(
                source_org_id=ORG,
                target_org_id=ORG,
                session_id="s1",
                job_id="j1",
                chunk_seq=2,
                outcomes=[rpb.RecordOutcome(object_name="Account", source_id=rid, state=rpb.RECORD_STATE_SKIPPED)],
            )
        ),
        # keep (issue 18): a prune job's step and a restore draft's pin are the services' own calls
        "PruneStep": lambda s: s.PruneStep(
            pb.PruneStepRequest(org_id=ORG, session_id="s1", job_id="j1", chunk_seq=2, dry_run=True)
        ),
        "PinRestorePoint": lambda s: s.PinRestorePoint(pb.PinRestorePointRequest(org_id=ORG, at=Timestamp(seconds=1))),
    }
    # every RPC that is not a read is listed (a new write is refused to people by default)
    methods = pb.DESCRIPTOR.services_by_name["StorageService"].methods
    assert {m.name for m in methods if service.ROLES[m.name] == "service"} == set(writes)
    port = stub.test_port  # type: ignore[attr-defined]
    for role in ("admin", "operator", "viewer"):
        async with aio_channel(f"127.0.0.1:{port}", token(role, f"a-{role}")) as channel:
            person = storage_pb2_grpc.StorageServiceStub(channel)
            for name, write in writes.items():
                try:
                    await write(person)
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.PERMISSION_DENIED, (role, name, exc.code())
                    assert "service role" in (exc.details() or "")
                else:
                    raise AssertionError(f"{name} accepted a {role} token")
            # reads stay open to people
            history = await person.GetRecordHistory(
                pb.GetRecordHistoryRequest(org_id=ORG, object_name="Account", record_id=rid)
            )
            assert len(history.versions) == 1
    with psycopg.connect(database_url) as conn:  # nothing the refused calls sent was stored
        assert conn.execute("SELECT count(*) FROM storage.chunks").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM storage.jobs").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM storage.record_versions").fetchone() == (1,)


async def _drain(call: Any) -> list[Any]:
    return [m async for m in call]


async def _upload(header: pb.FileHeader, body: bytes) -> AsyncIterator[pb.UploadFileRequest]:
    yield pb.UploadFileRequest(header=header)
    yield pb.UploadFileRequest(data=body)


async def test_reads_are_audited_who_what_when_never_the_values_and_listed_for_admins(
    stub: storage_pb2_grpc.StorageServiceStub,
) -> None:
    await stub.BeginJob(pb.BeginJobRequest(org_id=ORG, session_id="s1", job_id="j1", type=DATA, object_name="Account"))
    await stub.PutObjectSchema(pb.PutObjectSchemaRequest(org_id=ORG, session_id="s1", schema=SCHEMA))
    records = [account(1, "Secret Name"), account(2, "Secret Name")]
    await stub.PutRecords(
        pb.PutRecordsRequest(
            org_id=ORG, session_id="s1", job_id="j1", chunk_seq=1, object_name="Account", **chunk(records)
        )
    )
    await stub.BeginJob(pb.BeginJobRequest(org_id=ORG, session_id="s1", job_id="f1", type=FILE))
    file_id = sf_id("068", 1)
    header = pb.FileHeader(
        org_id=ORG, session_id="s1", job_id="f1", chunk_seq=1, object_name="ContentVersion", record_id=file_id, size=5
    )
    await stub.UploadFile(_upload(header, b"%PDF!"))
    await stub.PutMetadata(
        pb.PutMetadataRequest(
            org_id=ORG,
            session_id="s1",
            job_id="f1",
            chunk_seq=2,
            components=[pb.MetadataComponent(type="ApexClass", full_name="Secret", content=b"class Secret {}")],
        )
    )
    port = stub.test_port  # type: ignore[attr-defined]
    rid = sf_id("001", 1)
    at = Timestamp()
    at.GetCurrentTime()
    async with aio_channel(f"127.0.0.1:{port}", token("viewer", "alice")) as channel:
        alice = storage_pb2_grpc.StorageServiceStub(channel)
        await alice.GetRecordHistory(pb.GetRecordHistoryRequest(org_id=ORG, object_name="Account", record_id=rid))
        await alice.GetRecordAsOf(pb.GetRecordAsOfRequest(org_id=ORG, object_name="Account", record_id=rid, as_of=at))
        export = pb.ExportObjectAsOfRequest(org_id=ORG, object_name="Account", format=pb.EXPORT_FORMAT_JSONL)
        assert sum([c.records async for c in alice.ExportObjectAsOf(export)]) == 2
        get_file = pb.GetFileRequest(org_id=ORG, object_name="ContentVersion", record_id=file_id)
        assert b"".join([p.data async for p in alice.GetFile(get_file)]) == b"%PDF!"
        await alice.GetMetadataAsOf(pb.GetMetadataAsOfRequest(org_id=ORG, type="ApexClass", full_name="Secret"))
        missing = pb.GetRecordHistoryRequest(org_id=ORG, object_name="Account", record_id=sf_id("001", 9))
        assert await _code(alice.GetRecordHistory(missing)) == grpc.StatusCode.NOT_FOUND
        # the audit is for admins only
        assert await _code(alice.ListReadAudit(pb.ListReadAuditRequest())) == grpc.StatusCode.PERMISSION_DENIED

    async with aio_channel(f"127.0.0.1:{port}", token("admin", "root")) as channel:
        admin = storage_pb2_grpc.StorageServiceStub(channel)
        listed = await admin.ListReadAudit(pb.ListReadAuditRequest(actor="alice"))
        got = [(e.method, e.outcome, e.object_name, e.target, e.count) for e in listed.entries]
        assert got == [
            ("GetRecordHistory", "OK", "Account", rid, 1),
            ("GetRecordAsOf", "OK", "Account", rid, 1),
            ("ExportObjectAsOf", "OK", "Account", "", 2),
            ("GetFile", "OK", "ContentVersion", file_id, 5),
            ("GetMetadataAsOf", "OK", "ApexClass", "Secret", len(b"class Secret {}")),
            ("GetRecordHistory", "NOT_FOUND", "Account", sf_id("001", 9), 0),
        ]
        assert not listed.next_page_token
        first = listed.entries[0]
        assert (first.actor, first.role, first.org_id) == ("alice", "viewer", ORG) and first.token_id
        assert listed.entries[1].as_of == at and not listed.entries[0].HasField("as_of")
        assert all(e.at.seconds > 0 for e in listed.entries)
        assert "Secret Name" not in str(listed) and "class Secret" not in str(listed)  # never a value

        # everyone's reads (the service's own included), page by page, oldest first
        pages, token_ = [], ""
        while True:
            page = await admin.ListReadAudit(pb.ListReadAuditRequest(page_size=4, page_token=token_))
            pages.append([e.entry_id for e in page.entries])
            token_ = page.next_page_token
            if not token_:
                break
        ids = [i for p in pages for i in p]
        assert len(ids) == 6 and ids == sorted(ids) and [len(p) for p in pages] == [4, 2]
        later = Timestamp()
        later.FromSeconds(at.seconds + 3600)
        assert not (await admin.ListReadAudit(pb.ListReadAuditRequest(since=later))).entries
        bad = pb.ListReadAuditRequest(page_token="not-a-token")
        assert await _code(admin.ListReadAudit(bad)) == grpc.StatusCode.INVALID_ARGUMENT


def test_a_time_out_of_range_is_invalid_argument_in_storage_itself() -> None:
    from services.storage.api import _when
    from services.storage.domain import InvalidArgument

    request = pb.GetRecordAsOfRequest(as_of=Timestamp(seconds=10**12))
    with pytest.raises(InvalidArgument, match="as_of is not a time"):
        _when(request)
    assert _when(pb.GetRecordAsOfRequest()) is None


async def test_a_restore_over_grpc_reads_writes_and_announces_its_counts(
    stub: storage_pb2_grpc.StorageServiceStub, nats_url: str, bus_namespace: str
) -> None:
    await stub.BeginJob(pb.BeginJobRequest(org_id=ORG, session_id="s1", job_id="j1", type=DATA, object_name="Account"))
    await stub.PutObjectSchema(pb.PutObjectSchemaRequest(org_id=ORG, session_id="s1", schema=SCHEMA))
    put = pb.PutRecordsRequest(
        org_id=ORG, session_id="s1", job_id="j1", chunk_seq=1, object_name="Account", **chunk([account(1), account(2)])
    )
    await stub.PutRecords(put)
    target = sf_id("00D", 77)
    # the jobrunner reads what it restores, in batches: the first with the fields and the missing Ids
    read = pb.ReadRecordsAsOfRequest(
        org_id=ORG, object_name="Account", ids=[sf_id("001", 1)[:15], sf_id("001", 3)], batch_size=1
    )
    [batch] = [b async for b in stub.ReadRecordsAsOf(read)]
    assert [r.record_id for r in batch.records] == [sf_id("001", 1)]
    assert json.loads(batch.records[0].values_json)["Name"] == "Acme"
    assert [f.name for f in batch.fields] == [f.name for f in SCHEMA.fields]
    assert (batch.missing, list(batch.missing_ids)) == (1, [sf_id("001", 3)])
    # each version exactly as GetRecordAsOf gives it (the batch is built field by field)
    alone = pb.GetRecordAsOfRequest(org_id=ORG, object_name="Account", record_id=sf_id("001", 1))
    reference, got = await stub.GetRecordAsOf(alone), pb.RecordVersion()
    got.CopyFrom(batch.records[0])
    assert json.loads(got.values_json) == json.loads(reference.values_json)  # here canonical, there as stored
    got.ClearField("values_json")
    reference.ClearField("values_json")
    assert got == reference
    assert batch.records[0].HasField("system_modstamp") and batch.records[0].captured_at.seconds > 0
    # ids_only: the same records, each its Id alone, the same first batch
    read.ids_only = True
    [bare] = [b async for b in stub.ReadRecordsAsOf(read)]
    alone_ids = [pb.RecordVersion(org_id=ORG, object_name="Account", record_id=r.record_id) for r in batch.records]
    assert list(bare.records) == alone_ids and not bare.records[0].HasField("captured_at")
    assert list(bare.fields) == list(batch.fields) and list(bare.missing_ids) == [sf_id("001", 3)]
    both = pb.ReadRecordsAsOfRequest(org_id=ORG, object_name="Account", all=True, deleted_since=Timestamp(seconds=1))
    assert await _code(_drain(stub.ReadRecordsAsOf(both))) == grpc.StatusCode.INVALID_ARGUMENT

    begun = pb.BeginJobRequest(org_id=target, session_id="r1", job_id="restore", type=events_pb2.JOB_TYPE_RESTORE)
    assert (await stub.BeginJob(begun)).last_chunk_seq == 0
    intent = pb.RecordRestoreIntentRequest(
        org_id=target, session_id="r1", job_id="restore", batch_key="Account:create:1", object_name="Account",
        source_ids=[sf_id("001", 2)],
    )  # fmt: skip
    assert not (await stub.RecordRestoreIntent(intent)).already_recorded
    assert (await stub.RecordRestoreIntent(intent)).already_recorded
    outcomes = pb.PutRestoreOutcomesRequest(
        source_org_id=ORG,
        target_org_id=target,
        session_id="r1",
        job_id="restore",
        chunk_seq=1,
        outcomes=[
            rpb.RecordOutcome(
                object_name="Account", source_id=sf_id("001", 1), target_id=sf_id("001", 1),
                state=rpb.RECORD_STATE_UPDATED, changed_fields=["Name"],
            ),
            rpb.RecordOutcome(
                object_name="Account", source_id=sf_id("001", 2), target_id=sf_id("001", 900),
                state=rpb.RECORD_STATE_CREATED,
            ),
        ],
        resolved_intents=["Account:create:1"],
        write_calls=2,
        api_calls=3,
    )  # fmt: skip
    result = await stub.PutRestoreOutcomes(outcomes)
    [counts] = result.restore
    assert (counts.object_name, counts.created, counts.updated, counts.write_calls) == ("Account", 1, 1, 2)
    assert result.counts.api_calls == 3 and (await stub.PutRestoreOutcomes(outcomes)).replayed
    assert (await stub.BeginJob(begun)).last_chunk_seq == 1  # a resumed restore job goes on after chunk 1
    assert not (await stub.ListRestoreIntents(pb.ListRestoreIntentsRequest(session_id="r1", job_id="restore"))).intents
    bad = pb.PutRestoreOutcomesRequest()
    bad.CopyFrom(outcomes)
    bad.chunk_seq, bad.outcomes[0].state = 2, 42
    assert await _code(stub.PutRestoreOutcomes(bad)) == grpc.StatusCode.INVALID_ARGUMENT

    # ChunkUploaded of the restore chunk, with its counts per object, once
    bus = await Bus.connect(BusConfig(nats_url, namespace=bus_namespace), producer="test")
    try:
        sub = await bus.pull_subscription(
            bus.config.events_stream, "restore-observer", bus.config.events_subject("r1.ChunkUploaded")
        )
        [msg] = await sub.fetch(1, timeout=10)
        env = events.decode(msg.data)
        assert env.event_id == events.event_id("ChunkUploaded", "r1", "restore", 1)
        assert env.chunk_uploaded.counts.api_calls == 3
        assert [(r.object_name, r.created, r.updated) for r in env.chunk_uploaded.restore] == [("Account", 1, 1)]
    finally:
        await bus.close()

    # people read what a restore did and its Id map (viewer); the backup in bulk is not theirs
    port = stub.test_port  # type: ignore[attr-defined]
    async with aio_channel(f"127.0.0.1:{port}", token("viewer", "vera")) as channel:
        vera = storage_pb2_grpc.StorageServiceStub(channel)
        listed = await vera.ListRestoreRecords(pb.ListRestoreRecordsRequest(session_id="r1", page_size=1))
        assert [o.source_id for o in listed.outcomes] == [sf_id("001", 1)] and listed.next_page_token
        rest = await vera.ListRestoreRecords(
            pb.ListRestoreRecordsRequest(session_id="r1", page_token=listed.next_page_token)
        )
        assert [(o.source_id, o.target_id, o.state) for o in rest.outcomes] == [
            (sf_id("001", 2), sf_id("001", 900), rpb.RECORD_STATE_CREATED)
        ]
        mapped = await vera.GetIdMap(pb.GetIdMapRequest(source_org_id=ORG, target_org_id=target))
        assert dict(mapped.ids) == {sf_id("001", 2): sf_id("001", 900)}
        every = pb.ReadRecordsAsOfRequest(org_id=ORG, object_name="Account", all=True)
        assert await _code(_drain(vera.ReadRecordsAsOf(every))) == grpc.StatusCode.PERMISSION_DENIED
    for role, allowed in (("restorer", True), ("admin", True), ("operator", False)):  # an operator writes no org
        async with aio_channel(f"127.0.0.1:{port}", token(role, f"a-{role}")) as channel:
            call = storage_pb2_grpc.StorageServiceStub(channel).ReadRecordsAsOf(every)
            if allowed:
                assert sum(len(b.records) for b in await _drain(call)) == 2
            else:
                assert await _code(_drain(call)) == grpc.StatusCode.PERMISSION_DENIED

    # the bulk read is in the read audit: who, what selection, how many records; never a value
    async with aio_channel(f"127.0.0.1:{port}", token("admin", "root")) as channel:
        admin = storage_pb2_grpc.StorageServiceStub(channel)
        entries = (await admin.ListReadAudit(pb.ListReadAuditRequest(actor="jobrunner"))).entries
        got = [(e.method, e.outcome, e.object_name, e.target, e.count) for e in entries]
        assert ("ReadRecordsAsOf", "OK", "Account", "ids:2", 1) in got
        assert ("ReadRecordsAsOf", "INVALID_ARGUMENT", "Account", "deleted_since", 0) in got
