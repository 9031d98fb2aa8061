"""CompareAsOf and CountLive over gRPC: viewers may call them, the compare is audited (method, count, never a
value), bad input gets INVALID_ARGUMENT / NOT_FOUND, never INTERNAL."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sfvault.storage.v1 import storage_pb2 as pb
from sfvault.storage.v1 import storage_pb2_grpc

from services.platform.auth import aio_channel
from tests.auth import token
from tests.storage.conftest import DATA, ORG, account, sf_id
from tests.storage.test_api import SCHEMA, _code, chunk, stub  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration


def _now() -> Timestamp:
    at = Timestamp()
    at.GetCurrentTime()
    return at


async def _session(s: storage_pb2_grpc.StorageServiceStub, session: str, records: list[bytes]) -> None:
    await s.BeginJob(pb.BeginJobRequest(org_id=ORG, session_id=session, job_id="j", type=DATA, object_name="Account"))
    await s.PutObjectSchema(pb.PutObjectSchemaRequest(org_id=ORG, session_id=session, schema=SCHEMA))
    await s.PutRecords(
        pb.PutRecordsRequest(
            org_id=ORG, session_id=session, job_id="j", chunk_seq=1, object_name="Account", **chunk(records)
        )
    )


async def test_a_viewer_compares_two_points_and_counts_live_records_and_the_compare_is_audited(
    stub: storage_pb2_grpc.StorageServiceStub,  # noqa: F811
) -> None:
    await _session(stub, "s1", [account(n, f"Secret {n}") for n in range(1, 5)])
    t1 = _now()
    await _session(stub, "s2", [account(1, "Secret changed"), account(9, "Secret new")])
    await stub.MarkDeleted(
        pb.MarkDeletedRequest(
            org_id=ORG,
            session_id="s2",
            job_id="j",
            chunk_seq=2,
            object_name="Account",
            record_ids=[sf_id("001", 2)],
            state=pb.DELETED_STATE_HARD,
        )
    )
    port = stub.test_port  # type: ignore[attr-defined]
    async with aio_channel(f"127.0.0.1:{port}", token("viewer", "vera")) as channel:
        vera = storage_pb2_grpc.StorageServiceStub(channel)
        request = pb.CompareAsOfRequest(org_id=ORG, values=True, batch_size=1, **{"from": t1})
        pieces = [p async for p in vera.CompareAsOf(request)]
        got = [
            (c.record_id, c.change, [(f.field, f.old_json, f.new_json) for f in c.fields])
            for p in pieces
            for c in p.changes
        ]
        assert got == [
            (sf_id("001", 1), "changed", [("Name", b'"Secret 1"', b'"Secret changed"')]),
            (sf_id("001", 2), "deleted", []),
            (sf_id("001", 9), "added", []),
        ]
        assert [len(p.changes) for p in pieces] == [1, 1, 1, 0]
        last = pieces[-1]
        assert [(s.object_name, s.added, s.deleted, s.changed) for s in last.summaries] == [("Account", 1, 1, 1)]
        assert not last.truncated and not pieces[0].summaries

        cut = [p async for p in vera.CompareAsOf(pb.CompareAsOfRequest(org_id=ORG, limit=1, **{"from": t1}))]
        assert sum(len(p.changes) for p in cut) == 1 and cut[-1].truncated
        assert (cut[-1].summaries[0].added, cut[-1].summaries[0].deleted, cut[-1].summaries[0].changed) == (1, 1, 1)

        live = await vera.CountLive(pb.CountLiveRequest(org_id=ORG))
        assert dict(live.live) == {"Account": 4}  # 1, 3, 4, 9

        # bad input: precise codes
        async def code(req: pb.CompareAsOfRequest) -> grpc.StatusCode:
            try:
                _ = [p async for p in vera.CompareAsOf(req)]
            except grpc.aio.AioRpcError as exc:
                assert exc.details()
                return exc.code()
            raise AssertionError("the call succeeded")

        later = Timestamp(seconds=t1.seconds + 3600)
        assert await code(pb.CompareAsOfRequest(org_id=ORG)) == grpc.StatusCode.INVALID_ARGUMENT
        assert (
            await code(pb.CompareAsOfRequest(org_id=ORG, to=t1, **{"from": later})) == grpc.StatusCode.INVALID_ARGUMENT
        )
        assert (
            await code(pb.CompareAsOfRequest(org_id=ORG, fields=["Nope__c"], **{"from": t1}))
            == grpc.StatusCode.INVALID_ARGUMENT
        )
        assert await code(pb.CompareAsOfRequest(org_id=sf_id("00D", 7), **{"from": t1})) == grpc.StatusCode.NOT_FOUND
        assert (
            await code(pb.CompareAsOfRequest(org_id=ORG, objects=["Lead"], **{"from": t1})) == grpc.StatusCode.NOT_FOUND
        )
        assert await _code(vera.CountLive(pb.CountLiveRequest(org_id="x"))) == grpc.StatusCode.INVALID_ARGUMENT
        assert (
            await _code(vera.CountLive(pb.CountLiveRequest(org_id=ORG, objects=["Lead"]))) == grpc.StatusCode.NOT_FOUND
        )

    async with aio_channel(f"127.0.0.1:{port}", token("admin", "root")) as channel:
        admin = storage_pb2_grpc.StorageServiceStub(channel)
        listed = await admin.ListReadAudit(pb.ListReadAuditRequest(actor="vera"))
        entries = [(e.method, e.outcome, e.target, e.count) for e in listed.entries]
        assert entries[:2] == [("CompareAsOf", "OK", "* values", 3), ("CompareAsOf", "OK", "*", 1)]
        assert ("CompareAsOf", "NOT_FOUND", "Lead", 0) in entries
        assert "Secret" not in str(listed)
