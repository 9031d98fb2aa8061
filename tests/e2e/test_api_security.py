"""Every RPC of every service, against the services running as processes: without a token it is refused
(UNAUTHENTICATED), with a viewer token it is refused where it needs more (PERMISSION_DENIED), and no request
of any shape — fuzzed with hypothesis — gets INTERNAL or kills a service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sfvault.discovery.v1 import access_pb2, discovery_pb2
from sfvault.session.v1 import session_pb2
from sfvault.storage.v1 import storage_pb2

from devstack.localstack import Stack
from services.discovery.service import ROLES as DISCOVERY_ROLES
from services.platform.auth import ROLES, load_key, mint
from services.session.service import ROLES as SESSION_ROLES
from services.storage.service import ROLES as STORAGE_ROLES

pytestmark = pytest.mark.e2e

SERVICES = {
    "discovery": (discovery_pb2.DESCRIPTOR.services_by_name["DiscoveryService"], DISCOVERY_ROLES, "admin"),
    "session": (session_pb2.DESCRIPTOR.services_by_name["SessionService"], SESSION_ROLES, "admin"),
    "storage": (storage_pb2.DESCRIPTOR.services_by_name["StorageService"], STORAGE_ROLES, "service"),
    "access": (access_pb2.DESCRIPTOR.services_by_name["AccessService"], {}, "admin"),
}
PROCESS = {"access": "discovery"}  # the process serving a service, when not its namesake
METHODS = [(svc, m) for svc, (desc, _, _) in SERVICES.items() for m in desc.methods]


@pytest.fixture(scope="module")
def stack(bare_stack: Stack) -> Stack:
    return bare_stack  # no org: every check here is a call's answer


@pytest.fixture(scope="module")
def key(stack: Stack) -> bytes:
    return load_key(f"file:{stack.state_dir / 'auth.key'}")


@pytest.fixture(scope="module")
def channels(stack: Stack) -> Iterator[dict[str, grpc.Channel]]:
    chans = {name: grpc.insecure_channel(stack.address(PROCESS.get(name, name))) for name in SERVICES}
    yield chans
    for ch in chans.values():
        ch.close()


def call(channel: grpc.Channel, method: MethodDescriptor, request: Message, token: str) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_cls = GetMessageClass(method.output_type)
    metadata = [("authorization", f"Bearer {token}")] if token else []
    kwargs: dict[str, Any] = {
        "request_serializer": type(request).SerializeToString,
        "response_deserializer": response_cls.FromString,
    }
    try:
        if method.client_streaming:
            stub = channel.stream_unary(path, **kwargs)
            stub(iter([request]), metadata=metadata, timeout=30)
        elif method.server_streaming:
            for _ in channel.unary_stream(path, **kwargs)(request, metadata=metadata, timeout=5):
                pass
        else:
            channel.unary_unary(path, **kwargs)(request, metadata=metadata, timeout=30)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def required_role(service: str, method: str) -> str:
    _, roles, default = SERVICES[service]
    return roles.get(method, default)


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s}.{m.name}" for s, m in METHODS])
def test_every_rpc_checks_token_and_role(
    service: str, method: MethodDescriptor, channels: dict[str, grpc.Channel], key: bytes
) -> None:
    request = GetMessageClass(method.input_type)()
    assert call(channels[service], method, request, "") == grpc.StatusCode.UNAUTHENTICATED
    assert call(channels[service], method, request, "sfv1.forged.token") == grpc.StatusCode.UNAUTHENTICATED
    expired = mint(key, "old", "admin", ttl_s=60, now=time.time() - 3600)
    assert call(channels[service], method, request, expired) == grpc.StatusCode.UNAUTHENTICATED
    viewer = call(channels[service], method, request, mint(key, "victor", "viewer"))
    if ROLES[required_role(service, method.name)] > ROLES["viewer"]:
        assert viewer == grpc.StatusCode.PERMISSION_DENIED
    else:
        assert viewer not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


# ---- fuzzing ----------------------------------------------------------------------------------------------

_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "Account", "001000000000000AAA", "a.b", "*", ">", "x" * 300, "00D000000000001AAA", "../etc"]),
)
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    if field.type == FieldDescriptor.TYPE_STRING:
        return _TEXT
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b'{"Id": "001000000000000AAA", "Name": "x"}'))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-3, 50))
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, width=32 if field.type == FieldDescriptor.TYPE_FLOAT else 64)
    lo, hi = _INT_RANGES[field.type]
    return st.one_of(st.integers(lo, hi), st.integers(-5, 20))


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    cls = GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())
    if descriptor.full_name == "google.protobuf.Timestamp":
        return st.builds(
            lambda s, n: cls(seconds=s, nanos=n), st.integers(-62135596800, 253402300799), st.integers(0, 999_999_999)
        )
    if descriptor.full_name == "google.protobuf.Duration":
        return st.builds(lambda s: cls(seconds=s), st.integers(-315576000000, 315576000000))
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
            field = descriptor.fields_by_name[name]
            if isinstance(value, dict):
                target = getattr(msg, name)
                for k, v in value.items():
                    if isinstance(v, Message):
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif field.is_repeated:
                target = getattr(msg, name)
                for item in value:
                    target.add().CopyFrom(item) if isinstance(item, Message) else target.append(item)
            elif isinstance(value, Message):
                getattr(msg, name).CopyFrom(value)
            else:
                try:
                    setattr(msg, name, value)
                except (ValueError, TypeError):  # an enum value outside the closed set of a proto2 field
                    pass
        return msg

    return build()


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s}.{m.name}" for s, m in METHODS])
def test_fuzzed_requests_never_get_internal(
    service: str, method: MethodDescriptor, channels: dict[str, grpc.Channel], key: bytes, stack: Stack
) -> None:
    token = mint(key, "fuzzer", SERVICES[service][2])

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(messages(method.input_type))
    def check(request: Message) -> None:
        code = call(channels[service], method, request, token)
        assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (method.name, request)

    check()
    process = PROCESS.get(service, service)
    assert stack.services[process].running(), f"{process} died"
    with grpc.insecure_channel(stack.address(process)) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
