"""The jobrunner's PutRecords request: canonical records column by column, lined up as storage reads them; the
chunk's list is emptied once the request holds it, and a retry resends that request whole."""

from __future__ import annotations

from typing import Any

import grpc
from sfvault.storage.v1 import storage_pb2 as pb

from services.canonical import CANONICAL_RULES, CanonicalParts, Deleted, split_column_texts
from services.jobrunner.ports import Chunk
from services.jobrunner.storage_client import StorageClient, fill_columns

PARTS = [
    CanonicalParts("001000000000001AAA", b'{"Name":"A"}', b"{}", "2024-01-02T03:04:05.000Z", Deleted.LIVE),
    CanonicalParts("001000000000002AAA", b'{"Name":"B\\nC"}', b'{"F":1}', None, Deleted.SOFT),
]


def test_columns_line_up_as_storage_reads_them() -> None:
    columns = pb.CanonicalColumns()
    fill_columns(columns, PARTS)
    ids, values, others, modstamps, deleted, _values, _others = split_column_texts(columns)
    assert ids == [p.record_id for p in PARTS]
    assert values == [p.values for p in PARTS] and others == [p.other_values for p in PARTS]
    assert modstamps == ["2024-01-02T03:04:05.000Z", ""] and list(deleted) == [0, 1]


def test_no_records_are_empty_columns() -> None:
    columns = pb.CanonicalColumns()
    fill_columns(columns, [])
    assert split_column_texts(columns) == ([], [], [], [], b"", b"", b"")


class Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


class FlakyStub:
    """Refuses the first call as UNAVAILABLE, then answers; keeps every request it was given."""

    def __init__(self) -> None:
        self.requests: list[pb.PutRecordsRequest] = []

    def PutRecords(self, request: pb.PutRecordsRequest, timeout: float) -> Any:
        self.requests.append(pb.PutRecordsRequest.FromString(request.SerializeToString()))
        if len(self.requests) == 1:
            raise Unavailable()
        return pb.ChunkResult(counts={"received": request.canonical_columns.record_ids.count(b"\n")})


def test_the_list_is_emptied_and_a_retry_resends_the_whole_chunk(monkeypatch: Any) -> None:
    monkeypatch.setattr("time.sleep", lambda _s: None)
    client = StorageClient("127.0.0.1:1")
    try:
        client.stub = FlakyStub()  # type: ignore[assignment]
        records = list(PARTS)
        chunk = Chunk("00D000000000001AAA", "s", "j", 1, "Account")
        result = client.put_records(chunk, records, rules=CANONICAL_RULES, formula_changes_counted=False)
        assert records == []  # not held twice while it travels
        first, second = client.stub.requests  # type: ignore[attr-defined]
        assert first == second and result.counts.received == 2
        assert second.canonical_rules == CANONICAL_RULES and second.canonical_columns.deleted == b"\x00\x01"
    finally:
        client.close()
