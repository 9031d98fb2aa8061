"""Every request checked at the door, before any service code sees it, from the protobuf descriptors.

One server interceptor (every service's gRPC server gets it from grpcserver.start_grpc_server) refuses with
INVALID_ARGUMENT, naming the field, what no service could store or pass on: bytes that are not the method's
request message, a string longer than its limit or holding NUL (PostgreSQL text cannot), an id that is not
of the shape the services use (ids become NATS subject tokens), more items in a list than its limit, a
negative or huge number, an enum number the contract does not define, a Timestamp or Duration outside its
valid range. Defaults go by kind of field; `FIELD_RULES` holds the fields a default does not fit (the large
bodies: record chunks, file bodies, describes, metadata components) and `NAMED_RULES` the fields every
service names alike (ids, object names, page sizes). A new RPC or field is covered without a line here.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from services.platform.handlers import rewrap

# a value of this shape can be a NATS subject token (events.check_token) and a PostgreSQL key: the ids sfvault
# makes (uuid hex sessions, "data-<object>" jobs, policy and org names chosen by an admin)
ID_PATTERN = re.compile(r"[A-Za-z0-9_\-]+")
MAX_ID_LENGTH = 200
# Salesforce record ids: 15 or 18 letters and digits
SALESFORCE_ID_PATTERN = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
# an sObject or field API name: letters, digits and '_' (namespace__Name__c, AccountHistory)
API_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
HEX_SHA256_PATTERN = re.compile(r"[0-9A-Fa-f]{64}")

DEFAULT_MAX_STRING = 1_000  # characters: names, reasons, filters, urls, references
DEFAULT_MAX_BYTES = 1 << 20  # a bytes field not listed below; the large bodies are listed with their own limits
DEFAULT_MAX_ITEMS = 1_000  # items of a repeated field or entries of a map
MAX_INT = 2**53 - 1  # int64 fields: non-negative and at most this (exact in JSON, far from bigint overflow)
# google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z (its documented range)
MIN_TIMESTAMP_S, MAX_TIMESTAMP_S = -62_135_596_800, 253_402_300_799
# durations in requests (stall timeouts, reconciliation intervals): from zero to ten years
MAX_DURATION_S = 3_650 * 86_400

UNBOUNDED = -1  # a bytes or repeated field whose size only the server's message limit bounds


@dataclass(frozen=True)
class Rule:
    """The limits of one field. For a repeated field, `max_items` bounds the count and the rest each item."""

    max_length: int | None = None  # characters of a string, bytes of a bytes field; UNBOUNDED: message limit
    pattern: re.Pattern[str] | None = None  # the shape of a non-empty string
    shape: str = ""  # the shape in words, for the message
    max_items: int | None = None  # UNBOUNDED: the service bounds it (and the message limit)
    minimum: int = 0
    maximum: int | None = None
    check_items: bool = True  # False: the service checks each item itself (a hot path)


ID = Rule(MAX_ID_LENGTH, ID_PATTERN, "letters, digits, '_' and '-'")
METADATA_OR_API_NAME = re.compile(r"(?:metadata:)?[A-Za-z][A-Za-z0-9_]*")
SALESFORCE_ID = Rule(18, SALESFORCE_ID_PATTERN, "a Salesforce Id: 15 or 18 letters and digits")
API_NAME = Rule(255, API_NAME_PATTERN, "an API name: a letter, then letters, digits and '_'")

# fields named alike in every service
NAMED_RULES: dict[str, Rule] = {
    "session_id": ID,
    "job_id": ID,
    "policy_id": ID,
    "org_id": ID,
    "token_id": ID,
    "record_id": SALESFORCE_ID,
    "object_name": API_NAME,
    "sha256": Rule(64, HEX_SHA256_PATTERN, "64 hexadecimal digits"),
    "page_size": Rule(maximum=10_000),
    "limit": Rule(maximum=10_000),
}

# full field names -> their rule, where neither the name nor the default fits
FIELD_RULES: dict[str, Rule] = {
    # a chunk of records, column by column: bounded by storage's message limit (SFVAULT_STORAGE_MAX_MESSAGE_MB),
    # its count by SFVAULT_STORAGE_MAX_CHUNK_RECORDS; storage checks each column itself (Ids, canonical JSON)
    "sfvault.storage.v1.CanonicalColumns.record_ids": Rule(max_length=UNBOUNDED),
    "sfvault.storage.v1.CanonicalColumns.values": Rule(max_length=UNBOUNDED),
    "sfvault.storage.v1.CanonicalColumns.other_values": Rule(max_length=UNBOUNDED),
    "sfvault.storage.v1.CanonicalColumns.system_modstamps": Rule(max_length=UNBOUNDED),
    "sfvault.storage.v1.CanonicalColumns.deleted": Rule(max_length=UNBOUNDED),
    "sfvault.storage.v1.MarkDeletedRequest.record_ids": Rule(18, SALESFORCE_ID_PATTERN, SALESFORCE_ID.shape, UNBOUNDED),
    # a file body arrives in pieces of a few MiB; the whole file is bounded by FileHeader.size
    "sfvault.storage.v1.UploadFileRequest.data": Rule(max_length=UNBOUNDED),
    "sfvault.storage.v1.FileHeader.size": Rule(maximum=1 << 40),
    "sfvault.storage.v1.FileHeader.file_name": Rule(max_length=1_000),
    # an object's full describe (hundreds of fields) and a metadata component's XML can be several MiB
    "sfvault.storage.v1.ObjectSchema.describe_json": Rule(max_length=UNBOUNDED),
    "sfvault.storage.v1.ObjectSchema.fields": Rule(max_items=10_000),
    "sfvault.storage.v1.PutMetadataRequest.components": Rule(max_items=UNBOUNDED),
    "sfvault.storage.v1.MetadataComponent.content": Rule(max_length=UNBOUNDED),
    "sfvault.storage.v1.MetadataComponent.full_name": Rule(max_length=1_000),
    "sfvault.storage.v1.FieldSchema.name": API_NAME,
    # an org has a few thousand objects; an object up to a thousand fields
    "sfvault.discovery.v1.VerifyOrgRequest.objects": Rule(255, API_NAME_PATTERN, API_NAME.shape, 10_000),
    "sfvault.discovery.v1.Scope.include_objects": Rule(255, API_NAME_PATTERN, API_NAME.shape, 10_000),
    "sfvault.discovery.v1.Scope.exclude_objects": Rule(255, API_NAME_PATTERN, API_NAME.shape, 10_000),
    "sfvault.discovery.v1.Scope.exclude_fields": Rule(max_items=10_000),
    "sfvault.discovery.v1.Scope.ExcludeFieldsEntry.key": API_NAME,
    "sfvault.discovery.v1.FieldList.fields": Rule(255, API_NAME_PATTERN, API_NAME.shape, 10_000),
    "sfvault.discovery.v1.ApiBudget.daily_share_percent": Rule(maximum=100),
    # a connected app's consumer key is not an sfvault id (it holds '.')
    "sfvault.discovery.v1.OrgConnection.client_id": Rule(max_length=1_000),
    "sfvault.discovery.v1.OrgConnection.login_url": Rule(max_length=2_000),
    # a restore reads, maps and records large selections: storage bounds these itself (chunk records, 100,000 Ids)
    "sfvault.storage.v1.ReadRecordsAsOfRequest.ids": Rule(18, SALESFORCE_ID_PATTERN, SALESFORCE_ID.shape, 100_000),
    "sfvault.storage.v1.ReadRecordsAsOfRequest.where_in": Rule(18, SALESFORCE_ID_PATTERN, SALESFORCE_ID.shape, 100_000),
    "sfvault.storage.v1.RecordRestoreIntentRequest.source_ids": Rule(
        18, SALESFORCE_ID_PATTERN, SALESFORCE_ID.shape, 100_000
    ),
    "sfvault.storage.v1.GetIdMapRequest.source_ids": Rule(18, SALESFORCE_ID_PATTERN, SALESFORCE_ID.shape, 100_000),
    # storage checks each outcome itself (state, Ids, names: storage domain.check_outcome): a hot path
    "sfvault.storage.v1.PutRestoreOutcomesRequest.outcomes": Rule(max_items=UNBOUNDED, check_items=False),
    "sfvault.storage.v1.PutRestoreOutcomesRequest.resolved_intents": Rule(max_length=200, max_items=10_000),
    # a metadata component's outcome is filed under "metadata:<Type>"
    "sfvault.restore.v1.RecordOutcome.object_name": Rule(264, METADATA_OR_API_NAME, "an API name or metadata:<Type>"),
    "sfvault.storage.v1.ListRestoreRecordsRequest.object_name": Rule(
        264, METADATA_OR_API_NAME, "an API name or metadata:<Type>"
    ),
}

_INT32 = (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32)
_UINT32 = (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32)
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


class InvalidRequest(ValueError):
    """A request the layer refuses; its text names the field and the limit, never the value."""


def rule_for(field: FieldDescriptor) -> Rule:
    """The rule of a field: its own entry, else the entry of its name, else the default of its type."""
    rule = FIELD_RULES.get(field.full_name) or NAMED_RULES.get(field.name) or Rule()
    if rule.max_length is None and field.type == FieldDescriptor.TYPE_STRING:
        rule = dataclasses.replace(rule, max_length=DEFAULT_MAX_STRING)
    elif rule.max_length is None and field.type == FieldDescriptor.TYPE_BYTES:
        rule = dataclasses.replace(rule, max_length=DEFAULT_MAX_BYTES)
    if rule.max_items is None and field.is_repeated:
        rule = dataclasses.replace(rule, max_items=DEFAULT_MAX_ITEMS)
    if rule.maximum is None:
        if field.type in _INT32:
            rule = dataclasses.replace(rule, maximum=2**31 - 1)
        elif field.type in _UINT32:
            rule = dataclasses.replace(rule, maximum=2**32 - 1)
        else:
            rule = dataclasses.replace(rule, maximum=MAX_INT)
    return rule


Check = Callable[[Any, str], None]


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _value_check(field: FieldDescriptor, rule: Rule) -> Check | None:
    """The check of one value of `field` (one item of a repeated field), or None when nothing is checked."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        max_length, pattern, shape = rule.max_length, rule.pattern, rule.shape

        def check_string(value: str, path: str) -> None:
            if max_length is not None and max_length >= 0 and len(value) > max_length:
                raise InvalidRequest(f"{path} is longer than {max_length} characters ({len(value)})")
            if "\x00" in value:
                raise InvalidRequest(f"{path} contains a NUL character")
            if pattern is not None and value and not pattern.fullmatch(value):
                raise InvalidRequest(f"{path} must be {shape}")

        return check_string
    if kind == FieldDescriptor.TYPE_BYTES:
        max_bytes = rule.max_length
        if max_bytes is None or max_bytes < 0:
            return None

        def check_bytes(value: bytes, path: str) -> None:
            if len(value) > max_bytes:
                raise InvalidRequest(f"{path} is larger than {max_bytes} bytes ({len(value)})")

        return check_bytes
    if kind == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        assert enum is not None
        numbers = frozenset(v.number for v in enum.values)

        def check_enum(value: int, path: str) -> None:
            if value not in numbers:
                raise InvalidRequest(f"{path}: {value} is not a value of {enum.name}")

        return check_enum
    if kind == FieldDescriptor.TYPE_MESSAGE:
        if not rule.check_items:
            return None
        message_type = field.message_type
        assert message_type is not None

        def check_nested(value: Message, path: str) -> None:
            _check_message(value, message_type, f"{path}.")

        return check_nested
    if kind == FieldDescriptor.TYPE_BOOL:
        return None
    if kind in _FLOATS:

        def check_float(value: float, path: str) -> None:
            if not math.isfinite(value) or value < rule.minimum or (rule.maximum is not None and value > rule.maximum):
                raise InvalidRequest(f"{path} must be a finite number from {rule.minimum} to {rule.maximum}")

        return check_float
    minimum, maximum = rule.minimum, rule.maximum

    def check_int(value: int, path: str) -> None:
        if value < minimum or (maximum is not None and value > maximum):
            raise InvalidRequest(f"{path} must be from {minimum} to {maximum}, not {value}")

    return check_int


def _field_check(field: FieldDescriptor) -> Check | None:
    rule = rule_for(field)
    if _is_map(field):
        entry = field.message_type
        assert entry is not None
        key_check = _field_check(entry.fields_by_name["key"])
        value_check = _field_check(entry.fields_by_name["value"])
        max_entries = rule.max_items

        def check_map(value: Mapping[Any, Any], path: str) -> None:
            if max_entries is not None and max_entries >= 0 and len(value) > max_entries:
                raise InvalidRequest(f"{path} has more than {max_entries} entries ({len(value)})")
            for k, v in value.items():
                if key_check is not None:
                    key_check(k, f"{path} key")
                if value_check is not None:
                    value_check(v, f"{path}[{str(k)[:40]!r}]")

        return check_map
    one = _value_check(field, rule)
    if not field.is_repeated:
        return one
    max_items = rule.max_items

    def check_repeated(values: Any, path: str) -> None:
        if max_items is not None and max_items >= 0 and len(values) > max_items:
            raise InvalidRequest(f"{path} has more than {max_items} items ({len(values)})")
        if one is not None:
            for i, item in enumerate(values):
                one(item, f"{path}[{i}]")

    return check_repeated


def _check_timestamp(message: Message, path: str) -> None:
    seconds, nanos = message.seconds, message.nanos  # type: ignore[attr-defined]
    if not MIN_TIMESTAMP_S <= seconds <= MAX_TIMESTAMP_S or not 0 <= nanos <= 999_999_999:
        raise InvalidRequest(f"{path.rstrip('.')} is not a timestamp between 0001-01-01 and 9999-12-31")


def _check_duration(message: Message, path: str) -> None:
    seconds, nanos = message.seconds, message.nanos  # type: ignore[attr-defined]
    if not 0 <= seconds <= MAX_DURATION_S or not 0 <= nanos <= 999_999_999:
        raise InvalidRequest(f"{path.rstrip('.')} must be a duration from zero to {MAX_DURATION_S // 86_400} days")


_WELL_KNOWN: dict[str, Callable[[Message, str], None]] = {
    "google.protobuf.Timestamp": _check_timestamp,
    "google.protobuf.Duration": _check_duration,
}


@functools.cache
def _plan(descriptor: Descriptor) -> dict[str, Check]:
    """The checks of a message type's fields, by field name (built once per type)."""
    plan: dict[str, Check] = {}
    for field in descriptor.fields:
        check = _field_check(field)
        if check is not None:
            plan[field.name] = check
    return plan


def _check_message(message: Message, descriptor: Descriptor, path: str = "") -> None:
    special = _WELL_KNOWN.get(descriptor.full_name)
    if special is not None:
        special(message, path)
        return
    plan = _plan(descriptor)
    for field, value in message.ListFields():
        check = plan.get(field.name)
        if check is not None:
            check(value, f"{path}{field.name}")


def check_request(message: Message) -> None:
    """Raise InvalidRequest naming the first field of `message` outside its limits."""
    _check_message(message, message.DESCRIPTOR)  # type: ignore[arg-type]


# ---- the server side: a request deserializer that never raises, and a check before the servicer ----------


class Undecodable:
    """What a request that is not valid protobuf of its type becomes: refused with INVALID_ARGUMENT."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    @property
    def problem(self) -> str:
        return f"the request is not a valid {self.type_name} message (protobuf)"


def _safe_deserializer(deserializer: Callable[[bytes], Any] | None, type_name: str) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, invalid UTF-8 in a string, recursion too deep: the caller's bytes
            return Undecodable(type_name)

    return deserialize


def problem_of(request: Any) -> str | None:
    if isinstance(request, Undecodable):
        return request.problem
    if isinstance(request, Message):
        try:
            check_request(request)
        except InvalidRequest as exc:
            return str(exc)
    return None


def _method(path: str) -> MethodDescriptor | None:
    try:
        return descriptor_pool.Default().FindMethodByName(path.lstrip("/").replace("/", "."))
    except KeyError:
        return None


def validated_handler(handler: grpc.RpcMethodHandler, type_name: str) -> grpc.RpcMethodHandler:
    """`handler` with a deserializer that never raises and every request checked before its behaviour."""

    async def refuse(context: grpc.aio.ServicerContext, problem: str) -> None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)

    async def checked_stream(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for request in requests:
            problem = problem_of(request)
            if problem is not None:
                await refuse(context, problem)
            yield request

    def wrap_unary(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if handler.request_streaming:
                return await fn(checked_stream(request, context), context)
            problem = problem_of(request)
            if problem is not None:
                await refuse(context, problem)
            return await fn(request, context)

        return call

    def wrap_stream(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if handler.request_streaming:
                request = checked_stream(request, context)
            else:
                problem = problem_of(request)
                if problem is not None:
                    await refuse(context, problem)
            responses = fn(request, context)
            if inspect.isawaitable(responses):  # a handler that writes with context.write()
                await responses
                return
            async for item in responses:
                yield item

        return call

    wrapped = rewrap(handler, wrap_unary, wrap_stream)
    return wrapped._replace(request_deserializer=_safe_deserializer(handler.request_deserializer, type_name))


class RequestValidator(grpc.aio.ServerInterceptor):
    """The innermost interceptor: every method's request checked against the limits of its type (health and
    reflection included: their requests too must parse or be refused)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = _method(handler_call_details.method)
        type_name = method.input_type.full_name if method is not None else "request"
        return validated_handler(handler, type_name)
