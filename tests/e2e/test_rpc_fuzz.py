"""No input breaks a service: generated requests, valid and invalid, to every RPC of every service running as a
process (real PostgreSQL and NATS), with an admin's token and with the services' own.

The RPCs come from the descriptors of every generated `sfvault.*` protobuf module (a new RPC or service is
fuzzed without a line here), and each process is asked by server reflection what it serves, so a service
whose API is not covered fails the test. Each request is drawn from the request type's descriptor: ids that
exist and ids of every wrong shape, huge strings, NUL and odd Unicode, negative and huge numbers, unknown
enum values, Timestamps and Durations out of range, random bytes in bytes fields, and bytes that are not
protobuf at all. Asserted for each: never INTERNAL, UNKNOWN or RESOURCE_EXHAUSTED, every refusal says why,
the service's tables (a digest of each row of its schema) unchanged by a refused request, and every process
alive and SERVING afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import grpc
import nats
import psycopg
import pytest
import sfvault
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sfvault.discovery.v1 import discovery_pb2
from sfvault.events.v1 import events_pb2
from sfvault.session.v1 import session_pb2
from sfvault.storage.v1 import storage_pb2

from devstack.localstack import Stack
from services.canonical import CANONICAL_RULES
from services.platform.auth import load_key, mint
from tests.storage.conftest import sf_id

pytestmark = pytest.mark.e2e

ORG = "00D000000000062EAA"
RECORD = sf_id("001", 1)
SESSION = "s-seed"
JOB = "data-Account"
FORBIDDEN = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.RESOURCE_EXHAUSTED)


def _services() -> dict[str, ServiceDescriptor]:
    """Every gRPC service of the contracts, from the generated modules (imported so the pool holds them)."""
    found: dict[str, ServiceDescriptor] = {}
    for module in pkgutil.walk_packages(sfvault.__path__, "sfvault."):
        if module.name.endswith("_pb2"):
            for service in importlib.import_module(module.name).DESCRIPTOR.services_by_name.values():
                found[service.full_name] = service
    return found


SERVICES = _services()
METHODS = [(s, m) for s in SERVICES.values() for m in s.methods]
# the process serving each service: sfvault.<process>.v1.<Name>
PROCESS = {name: name.split(".")[1] for name in SERVICES}


@pytest.fixture(scope="module")
def stack(bare_stack: Stack) -> Stack:
    return bare_stack


@pytest.fixture(scope="module")
def tokens(stack: Stack) -> dict[str, str]:
    key = load_key(f"file:{stack.state_dir / 'auth.key'}")
    return {"admin": mint(key, "fuzz-admin", "admin"), "service": mint(key, "fuzz-service", "service")}


@pytest.fixture(scope="module")
def channels(stack: Stack) -> Iterator[dict[str, grpc.Channel]]:
    opts = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    chans = {name: grpc.insecure_channel(svc.address, options=opts) for name, svc in stack.services.items()}
    yield chans
    for channel in chans.values():
        channel.close()


class Quiet:
    """Waits until nothing is in flight: every service's durable consumer of every stream has processed what it
    was sent and storage's outbox is empty, so what a call leaves in the tables is that call's doing."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.loop = asyncio.new_event_loop()
        self.nc = self.loop.run_until_complete(nats.connect(stack.nats_url))
        self.db = psycopg.connect(stack.database_url, autocommit=True)
        self.dirty = True

    def wait(self, timeout_s: float = 30.0) -> None:
        if self.dirty:
            self.loop.run_until_complete(self._consumers_idle(timeout_s))
            self._outbox_empty(timeout_s)
            self.dirty = False

    async def _consumers_idle(self, timeout_s: float) -> None:
        js = self.nc.jetstream()
        deadline = self.loop.time() + timeout_s
        while True:
            busy = [
                (stream.config.name, c.name, c.num_pending, c.num_ack_pending)
                for stream in await js.streams_info()
                if "AUDIT" not in (stream.config.name or "")  # the audit log is left out of the digests
                for c in await js.consumers_info(stream.config.name or "")
                if c.config.durable_name and (c.num_pending or c.num_ack_pending)
            ]
            if not busy:
                return
            assert self.loop.time() < deadline, f"consumers never caught up: {busy}"
            await asyncio.sleep(0.05)  # JetStream has no "idle" notification; the condition is re-read

    def _outbox_empty(self, timeout_s: float) -> None:
        tables = [
            r[0]
            for r in self.db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'storage'"
                " AND table_name LIKE '%%outbox%%'"
            )
        ]
        for table in tables:
            deadline = self.loop.time() + timeout_s
            while self.db.execute(f'SELECT count(*) FROM storage."{table}"').fetchone()[0]:  # type: ignore[index]
                assert self.loop.time() < deadline, f"storage.{table} never emptied"
                self.loop.run_until_complete(asyncio.sleep(0.05))

    def digest(self, schema: str) -> dict[str, str]:
        """A digest of every row of every table of `schema` (the audit log left out: it records refusals)."""
        tables = [
            r[0]
            for r in self.db.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname NOT LIKE '%%audit%%'"
                " ORDER BY 1",
                (schema,),
            )
        ]
        if not tables:
            return {}
        query = " UNION ALL ".join(
            f"SELECT '{t}', md5(coalesce(string_agg(md5(x::text), '' ORDER BY md5(x::text)), ''))"
            f' FROM "{schema}"."{t}" x'
            for t in tables
        )
        return {row[0]: row[1] for row in self.db.execute(query)}

    def close(self) -> None:
        self.loop.run_until_complete(self.nc.close())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
        self.db.close()


@pytest.fixture(scope="module")
def quiet(stack: Stack, channels: dict[str, grpc.Channel], tokens: dict[str, str]) -> Iterator[Quiet]:
    q = Quiet(stack)
    _seed(channels, tokens)
    try:
        yield q
    finally:
        q.close()


def _seed(channels: dict[str, grpc.Channel], tokens: dict[str, str]) -> None:
    """Something to find: a policy, and one stored record of a begun job (the ids the strategies draw)."""
    service = [("authorization", f"Bearer {tokens['service']}")]
    admin = [("authorization", f"Bearer {tokens['admin']}")]
    storage = storage_pb2.DESCRIPTOR.services_by_name["StorageService"]
    discovery = discovery_pb2.DESCRIPTOR.services_by_name["DiscoveryService"]
    schema = storage_pb2.ObjectSchema(
        object_name="Account",
        key_prefix="001",
        fields=[
            storage_pb2.FieldSchema(name="Id", type=storage_pb2.FIELD_TYPE_ID),
            storage_pb2.FieldSchema(name="Name", type=storage_pb2.FIELD_TYPE_STRING),
        ],
    )
    seed: list[tuple[str, ServiceDescriptor, str, Message, Any]] = [
        (
            "storage",
            storage,
            "BeginJob",
            storage_pb2.BeginJobRequest(
                org_id=ORG, session_id=SESSION, job_id=JOB, type=events_pb2.JOB_TYPE_DATA, object_name="Account"
            ),
            service,
        ),
        (
            "storage",
            storage,
            "PutObjectSchema",
            storage_pb2.PutObjectSchemaRequest(org_id=ORG, session_id=SESSION, schema=schema),
            service,
        ),
        (
            "storage",
            storage,
            "PutRecords",
            storage_pb2.PutRecordsRequest(
                org_id=ORG,
                session_id=SESSION,
                job_id=JOB,
                chunk_seq=1,
                object_name="Account",
                canonical_columns=storage_pb2.CanonicalColumns(
                    record_ids=RECORD.encode() + b"\n",
                    values=b'{"Id":"%s","Name":"seed"}\n' % RECORD.encode(),
                    other_values=b"{}\n",
                    system_modstamps=b"\n",
                    deleted=b"\x00",
                ),
                canonical_rules=CANONICAL_RULES,
            ),
            service,
        ),
        (
            "discovery",
            discovery,
            "CreatePolicy",
            discovery_pb2.CreatePolicyRequest(policy=discovery_pb2.Policy(policy_id="p1", org_id="o1", name="seed")),
            admin,
        ),
    ]
    for process, svc, name, request, metadata in seed:
        method = svc.methods_by_name[name]
        code, details = _call(channels[process], method, request.SerializeToString(), metadata)
        # the policy's org does not exist: NOT_FOUND is as good a seed as any (the policy id is drawn anyway)
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND), (name, code, details)


def _call(
    channel: grpc.Channel, method: MethodDescriptor, body: bytes, metadata: list[tuple[str, str]]
) -> tuple[grpc.StatusCode, str]:
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.client_streaming:
            channel.stream_unary(path)(iter([body, body]), metadata=metadata, timeout=30)
        elif method.server_streaming:
            for _ in channel.unary_stream(path)(body, metadata=metadata, timeout=3):
                pass
        else:
            channel.unary_unary(path)(body, metadata=metadata, timeout=30)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


# ---- strategies from the descriptors ----------------------------------------------------------------------

_IDS = ["o1", "p1", ORG, SESSION, JOB, RECORD, "0" * 32, "00D000000000001AAA", "001000000000001"]
_BAD = ["", "a.b", "*", ">", "a b", "../../etc/passwd", "x" * 201, "s" * 5000, "é" * 1001, "a\x00b", "\u202e\ufeff"]
_HUGE = ["y" * 100_000]
_STRINGS = st.one_of(
    st.sampled_from(_IDS + _BAD + _HUGE + ["Account", "Contact", "ApexClass", "manual", "hourly", "https://x"]),
    st.text(max_size=30),
)
_INTS = [0, 1, 2, 50, 10_000, 10_001, -1, -(2**31), 2**31 - 1, 2**53, 2**62]
_INT_BOUNDS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_BYTES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"{}", b'{"Id": "%s", "Name": "x"}' % RECORD.encode(), b'{"Id": "\\u0000"}', b"\x00\xff"]),
)


def _scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return messages(field.message_type, depth + 1)
    if field.type == FieldDescriptor.TYPE_STRING:
        return _STRINGS
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _BYTES
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return st.sampled_from([v.number for v in field.enum_type.values] + [-1, 99])
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if field.type == FieldDescriptor.TYPE_FLOAT else 64)
    lo, hi = _INT_BOUNDS.get(field.type, (-(2**63), 2**63 - 1))
    return st.one_of(st.sampled_from([i for i in _INTS if lo <= i <= hi]), st.integers(lo, hi))


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    cls: Any = GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())
    if descriptor.full_name == "google.protobuf.Timestamp":
        seconds = st.one_of(st.integers(-62_135_596_800, 253_402_300_799), st.sampled_from([-(2**62), 2**62, 0]))
        return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, st.sampled_from([0, 1, -1, 10**9]))
    if descriptor.full_name == "google.protobuf.Duration":
        seconds = st.sampled_from([0, 1, 60, 86_400, -1, 10**11, 2**62])
        return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, st.sampled_from([0, 5, -5, 10**9]))
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_f, value_f = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            fields[field.name] = st.dictionaries(_scalar(key_f, depth), _scalar(value_f, depth), max_size=2)
        elif field.is_repeated:
            fields[field.name] = st.lists(_scalar(field, depth), max_size=3)
        else:
            fields[field.name] = _scalar(field, depth)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        for name, strategy in fields.items():
            if not draw(st.booleans()):
                continue
            value = draw(strategy)
            target = getattr(msg, name)
            if isinstance(value, dict):
                for k, v in value.items():
                    target[k].CopyFrom(v) if isinstance(v, Message) else target.__setitem__(k, v)
            elif isinstance(value, list):
                for item in value:
                    target.add().CopyFrom(item) if isinstance(item, Message) else target.append(item)
            elif isinstance(value, Message):
                target.CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return build()


def bodies(method: MethodDescriptor) -> st.SearchStrategy[bytes]:
    """The bytes of a request: a generated message, or bytes that are not protobuf of any kind."""
    return st.one_of(
        messages(method.input_type).map(lambda m: m.SerializeToString()),
        st.binary(min_size=1, max_size=40),
        st.sampled_from([b"\xff\xff\xff\xff", b"\x0f", b"\x0a\x02\xc3\x28", b"\x0a\xff\xff\xff\xff\x0f"]),
    )


# ---- the tests --------------------------------------------------------------------------------------------


def test_every_service_a_process_serves_is_fuzzed(stack: Stack, channels: dict[str, grpc.Channel]) -> None:
    served: set[str] = set()
    for channel in channels.values():
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        for reply in stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])):
            served.update(s.name for s in reply.list_services_response.service)
    ours = {s for s in served if s.startswith("sfvault.")}
    assert ours and ours <= set(SERVICES), ours - set(SERVICES)
    assert all(PROCESS[s] in stack.services for s in ours)


@pytest.mark.parametrize("method", [m for _, m in METHODS], ids=[f"{s.name}.{m.name}" for s, m in METHODS])
def test_no_request_breaks_a_service(
    method: MethodDescriptor,
    stack: Stack,
    channels: dict[str, grpc.Channel],
    tokens: dict[str, str],
    quiet: Quiet,
) -> None:
    process = PROCESS[method.containing_service.full_name]
    channel = channels[process]

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies(method), role=st.sampled_from(["admin", "service"]))
    def check(body: bytes, role: str) -> None:
        quiet.wait()
        before = quiet.digest(process)
        code, details = _call(channel, method, body, [("authorization", f"Bearer {tokens[role]}")])
        assert code not in FORBIDDEN, (method.name, code, details, body[:200])
        if code == grpc.StatusCode.OK:
            quiet.dirty = True  # what it started may still run: wait for it before the next comparison
            return
        assert details, f"{method.name}: a refusal ({code.name}) without a reason"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            assert method.server_streaming, f"{method.name} hung"
            quiet.dirty = True  # a watch that was still open: a valid call
            return
        assert quiet.digest(process) == before, f"{method.name} refused ({code.name}: {details}) but changed a table"

    check()
    for name, svc in stack.services.items():
        assert svc.running(), f"{name} died; see {svc.log_path}"
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_of_every_process_survives_garbage(stack: Stack, channels: dict[str, grpc.Channel]) -> None:
    check = descriptor_pool.Default().FindMethodByName("grpc.health.v1.Health.Check")
    for name, channel in channels.items():
        code, _ = _call(channel, check, b"\xff\xff\xff", [])
        assert code == grpc.StatusCode.INVALID_ARGUMENT, name
        assert stack.services[name].running()


_MAX_TS = {"seconds": 253_402_300_799, "nanos": 999_999_999}
_MIN_TS = {"seconds": -62_135_596_800}


def _edges() -> list[tuple[str, str, Message]]:
    """Requests at the very edges of what the door lets through, with ids that exist: the services must serve
    them (the first and last timestamp, the longest duration, the largest page and chunk number)."""
    edges: list[tuple[str, str, Message]] = []
    for ts in (_MAX_TS, _MIN_TS):
        t = Timestamp(**ts)
        edges += [
            (
                "StorageService",
                "GetRecordAsOf",
                storage_pb2.GetRecordAsOfRequest(org_id=ORG, object_name="Account", record_id=RECORD, as_of=t),
            ),
            (
                "StorageService",
                "ExportObjectAsOf",
                storage_pb2.ExportObjectAsOfRequest(org_id=ORG, object_name="Account", as_of=t),
            ),
            (
                "StorageService",
                "GetFile",
                storage_pb2.GetFileRequest(org_id=ORG, object_name="Account", record_id=RECORD, as_of=t),
            ),
            (
                "StorageService",
                "GetMetadataAsOf",
                storage_pb2.GetMetadataAsOfRequest(org_id=ORG, type="ApexClass", full_name="X", as_of=t),
            ),
            (
                "SessionService",
                "ListSessions",
                session_pb2.ListSessionsRequest(requested_after=t, requested_before=t, page_size=10_000),
            ),
            (
                "StorageService",
                "MarkDeleted",
                storage_pb2.MarkDeletedRequest(
                    org_id=ORG,
                    session_id=SESSION,
                    job_id=JOB,
                    chunk_seq=2**53 - 1,
                    object_name="Account",
                    record_ids=[RECORD],
                    state=storage_pb2.DELETED_STATE_SOFT,
                    deleted_at=t,
                ),
            ),
            (
                "StorageService",
                "PutMetadata",
                storage_pb2.PutMetadataRequest(
                    org_id=ORG,
                    session_id=SESSION,
                    job_id=JOB,
                    chunk_seq=2**53 - 2,
                    components=[storage_pb2.MetadataComponent(type="ApexClass", full_name="X", last_modified_date=t)],
                ),
            ),
        ]
    edges += [
        ("StorageService", "ListMetadataVersions", storage_pb2.ListMetadataVersionsRequest(org_id=ORG, limit=10_000)),
        (
            "SessionService",
            "StartSession",
            session_pb2.StartSessionRequest(
                policy_id="p1", org_id="o1", stall_timeout=Duration(seconds=3_650 * 86_400)
            ),
        ),
        (
            "DiscoveryService",
            "CreatePolicy",
            discovery_pb2.CreatePolicyRequest(
                policy=discovery_pb2.Policy(
                    policy_id="p2",
                    org_id="o1",
                    stall_timeout=Duration(seconds=3_650 * 86_400),
                    reconcile_every=Duration(seconds=3_650 * 86_400, nanos=999_999_999),
                    api_budget=discovery_pb2.ApiBudget(daily_share_percent=100, per_run_cap=2**53 - 1),
                )
            ),
        ),
    ]
    return edges


@pytest.mark.parametrize("edge", _edges(), ids=lambda e: e[1] if isinstance(e, tuple) else "")
def test_the_edges_of_the_limits_are_served(
    edge: tuple[str, str, Message],
    stack: Stack,
    channels: dict[str, grpc.Channel],
    tokens: dict[str, str],
    quiet: Quiet,
) -> None:
    service, name, request = edge
    method = SERVICES[f"sfvault.{service.removesuffix('Service').lower()}.v1.{service}"].methods_by_name[name]
    role = "service" if service == "StorageService" else "admin"
    code, details = _call(
        channels[PROCESS[method.containing_service.full_name]],
        method,
        request.SerializeToString(),
        [("authorization", f"Bearer {tokens[role]}")],
    )
    assert code not in FORBIDDEN, (name, code, details)
    quiet.dirty = True


def _token(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode()


@pytest.mark.parametrize(
    "page_token",
    [
        _token(b"2026-01-01T00:00:00+00:00|a\x00b"),  # NUL in what becomes a SQL parameter
        _token(b"2026-01-01T00:00:00|naive"),
        _token(b"9999-12-31T23:59:59.999999+00:00|x"),
        _token(b"0001-01-01T00:00:00-23:59|x"),  # before the first representable UTC instant
        _token(b"\xff\xfe|x"),
        "not base64 at all!",
        "=" * 900,
    ],
)
def test_page_tokens_of_any_shape_never_break_a_listing(
    page_token: str, channels: dict[str, grpc.Channel], tokens: dict[str, str], quiet: Quiet
) -> None:
    method = SERVICES["sfvault.session.v1.SessionService"].methods_by_name["ListSessions"]
    request = session_pb2.ListSessionsRequest(page_token=page_token)
    code, details = _call(channels["session"], method, request.SerializeToString(), _bearer(tokens["admin"]))
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), (code, details)


@pytest.mark.parametrize(
    "metadata",
    [
        [("authorization", "Bearer " + "x" * 6000)],
        [("authorization", "Bearer sfv1.%.~")],
        [("authorization", "Bearer sfv1..")],
        [("authorization", "Bearer sfv1.W10.W10")],  # a JSON list where claims are expected
        [("authorization", "Bearer sfv1.bnVsbA.bnVsbA")],  # JSON null
        [("authorization", "Basic dXNlcjpwYXNz")],
        [("authorization", "Bearer")],
        [("authorization-bin", b"\x00\xff")],
    ],
)
def test_hostile_authorization_headers_are_unauthenticated(
    metadata: list[tuple[str, Any]], stack: Stack, channels: dict[str, grpc.Channel]
) -> None:
    for service in SERVICES.values():
        method = service.methods[0]
        process = PROCESS[service.full_name]
        code, details = _call(channels[process], method, b"", metadata)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (service.name, code, details)
        assert stack.services[process].running()


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.mark.parametrize("page_token", ["²", "99999999999999999999", "-1", "1e5", "٣"])
def test_audit_page_tokens_of_any_shape_are_invalid_argument(
    page_token: str, channels: dict[str, grpc.Channel], tokens: dict[str, str]
) -> None:
    access = next((s for s in SERVICES.values() if s.name == "AccessService"), None)
    assert access is not None
    method = access.methods_by_name["ListAudit"]
    request = GetMessageClass(method.input_type)(page_token=page_token)
    code, details = _call(
        channels[PROCESS[access.full_name]], method, request.SerializeToString(), _bearer(tokens["admin"])
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
