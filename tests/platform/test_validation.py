"""The request limits (services.platform.validation), checked without a server: every field of every request
of every service has a rule, the large bodies an explicit one, and each kind of bad value is named."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sfvault.discovery.v1 import discovery_pb2
from sfvault.session.v1 import session_pb2
from sfvault.storage.v1 import storage_pb2

from services.platform import validation
from services.platform.validation import FIELD_RULES, InvalidRequest, check_request

SERVICES = [
    discovery_pb2.DESCRIPTOR.services_by_name["DiscoveryService"],
    session_pb2.DESCRIPTOR.services_by_name["SessionService"],
    storage_pb2.DESCRIPTOR.services_by_name["StorageService"],
]


def request_fields() -> Iterator[FieldDescriptor]:
    seen: set[str] = set()

    def walk(descriptor: Descriptor) -> Iterator[FieldDescriptor]:
        if descriptor.full_name in seen or descriptor.full_name.startswith("google.protobuf."):
            return
        seen.add(descriptor.full_name)
        for field in descriptor.fields:
            yield field
            if field.message_type is not None:
                yield from walk(field.message_type)

    for service in SERVICES:
        for method in service.methods:
            yield from walk(method.input_type)


def test_every_bytes_field_of_a_request_has_an_explicit_limit() -> None:
    # the large bodies (record chunks, file bodies, describes, metadata) are large by design: each one is
    # a decision, not the 1 MiB default
    undecided = [f.full_name for f in request_fields() if f.type == f.TYPE_BYTES and f.full_name not in FIELD_RULES]
    assert undecided == []


def test_every_override_names_a_field_that_exists() -> None:
    pool = descriptor_pool.Default()
    for name in FIELD_RULES:
        assert pool.FindFieldByName(name) is not None, name


def test_every_string_and_list_is_bounded() -> None:
    for field in request_fields():
        rule = validation.rule_for(field)
        if field.type == field.TYPE_STRING:
            assert rule.max_length is not None and 0 < rule.max_length <= 2_000, field.full_name
        if field.is_repeated and field.full_name not in FIELD_RULES:
            assert rule.max_items == validation.DEFAULT_MAX_ITEMS, field.full_name


@pytest.mark.parametrize(
    ("request_", "problem"),
    [
        (session_pb2.StartSessionRequest(session_id="s" * 5000), "session_id is longer than 200 characters (5000)"),
        (session_pb2.StartSessionRequest(policy_id="p.q"), "policy_id must be letters, digits, '_' and '-'"),
        (session_pb2.CancelSessionRequest(reason="r" * 1001), "reason is longer than 1000 characters (1001)"),
        (session_pb2.CancelSessionRequest(reason="a\x00b"), "reason contains a NUL character"),
        (session_pb2.ListSessionsRequest(page_size=-1), "page_size must be from 0 to 10000, not -1"),
        (session_pb2.ListSessionsRequest(status=42), "status: 42 is not a value of SessionStatus"),  # type: ignore[arg-type]
        (
            session_pb2.ListSessionsRequest(requested_after=Timestamp(seconds=253402300800)),
            "requested_after is not a timestamp between 0001-01-01 and 9999-12-31",
        ),
        (
            session_pb2.StartSessionRequest(stall_timeout=Duration(seconds=10**11)),
            "stall_timeout must be a duration from zero to 3650 days",
        ),
        (
            storage_pb2.GetRecordHistoryRequest(org_id="00D000000000001AAA", record_id="001' OR 1=1"),
            "record_id must be a Salesforce Id: 15 or 18 letters and digits",
        ),
        (storage_pb2.GetFileRequest(sha256="zz"), "sha256 must be 64 hexadecimal digits"),
        (storage_pb2.ListRestorePointsRequest(object_name="Account; drop"), "object_name must be an API name"),
        (
            storage_pb2.MarkDeletedRequest(record_ids=["001000000000001AAA", "bad id"]),
            "record_ids[1] must be a Salesforce Id: 15 or 18 letters and digits",
        ),
        (
            discovery_pb2.VerifyOrgRequest(objects=["Account"] * 10_001),
            "objects has more than 10000 items (10001)",
        ),
        (
            discovery_pb2.CreatePolicyRequest(
                policy=discovery_pb2.Policy(
                    scope=discovery_pb2.Scope(exclude_fields={"Account": discovery_pb2.FieldList(fields=["a b"])})
                )
            ),
            "policy.scope.exclude_fields['Account'].fields[0] must be an API name",
        ),
        (
            discovery_pb2.CreatePolicyRequest(
                policy=discovery_pb2.Policy(api_budget=discovery_pb2.ApiBudget(per_run_cap=-1))
            ),
            "policy.api_budget.per_run_cap must be from 0 to 9007199254740991, not -1",
        ),
        (
            storage_pb2.ListMetadataVersionsRequest(limit=10_001),
            "limit must be from 0 to 10000, not 10001",
        ),
    ],
)
def test_each_kind_of_bad_value_is_named(request_: Message, problem: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_request(request_)
    assert str(refused.value).startswith(problem)


def test_the_large_bodies_pass() -> None:
    big = b"x" * (3 << 20)
    check_request(
        storage_pb2.PutRecordsRequest(
            canonical_columns=storage_pb2.CanonicalColumns(record_ids=big), session_id="s", job_id="data-Account"
        )
    )
    check_request(storage_pb2.UploadFileRequest(data=big))
    check_request(
        storage_pb2.PutMetadataRequest(components=[storage_pb2.MetadataComponent(type="ApexClass", content=big)])
    )
    check_request(storage_pb2.PutObjectSchemaRequest(schema=storage_pb2.ObjectSchema(describe_json=big)))
    check_request(storage_pb2.PutRecordsRequest(canonical_columns=storage_pb2.CanonicalColumns(values=big)))


def test_valid_requests_pass() -> None:
    check_request(
        session_pb2.StartSessionRequest(
            policy_id="nightly",
            org_id="prod",
            session_id="0f" * 16,
            trigger="manual",
            stall_timeout=Duration(seconds=60),
        )
    )
    check_request(
        storage_pb2.GetRecordAsOfRequest(
            org_id="00D000000000001AAA",
            object_name="ns__Thing__c",
            record_id="001000000000001",
            as_of=Timestamp(seconds=-62_135_596_800),
        )
    )
    check_request(
        discovery_pb2.CreateOrgRequest(
            org_id="prod",
            name="Production org — ünïcode",
            connection=discovery_pb2.OrgConnection(client_id="3MVG9.abc_DEF", login_url="https://x.my.salesforce.com"),
        )
    )
