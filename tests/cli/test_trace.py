"""`sfvault session trace`'s tree (services/cli/trace.py) on a trace made here, and the trace file it reads
(services/platform/tracefile.py) written by the SDK's batch processor. The real backup's tree:
tests/e2e/test_observability.py."""

from __future__ import annotations

import io
import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, set_span_in_context
from rich.console import Console

from services.cli import trace
from services.cli.errors import CodedError
from services.platform import tracefile
from services.platform.tracefile import FileSpan

SESSION = "3f2a0c0d9e8b4a7f8c6d5e4f3a2b1c0d"
_ids = itertools.count(1)


def span(name: str, service: str, kind: str, parent: FileSpan | None, start: int, end: int, **attrs: Any) -> FileSpan:
    return FileSpan(
        trace_id="ab" * 16,
        span_id=f"{next(_ids):016x}",
        parent_id=parent.span_id if parent else "",
        name=name,
        service=service,
        kind=kind,
        start_ns=start * 1_000_000,
        end_ns=end * 1_000_000,
        attributes={"sfvault.session_id": SESSION, **attrs},
    )


def backup(chunks: int) -> list[FileSpan]:
    """A session's trace as the services make it: the call that starts it, the hops across NATS, one job with
    `chunks` chunks of 10 records, each stored by a gRPC call whose server side runs SQL statements."""
    root = span("/sfvault.session.v1.SessionService/StartSession", "session", "SERVER", None, 0, 20)
    publish = span("publish SessionRequested", "session", "PRODUCER", root, 5, 6)
    plan = span("process SessionRequested", "discovery", "CONSUMER", publish, 7, 100)
    spec = span("publish JobSpec", "discovery", "PRODUCER", plan, 90, 91)
    job = span("process JobSpec", "jobrunner", "CONSUMER", spec, 100, 900, **{"sfvault.job_id": "data-Account"})
    spans = [root, publish, plan, spec, job]
    for seq in range(1, chunks + 1):
        at = 100 + seq * 10
        client = span("/sfvault.storage.v1.StorageService/PutRecords", "jobrunner", "CLIENT", job, at, at + 8)
        server = span("/sfvault.storage.v1.StorageService/PutRecords", "storage", "SERVER", client, at + 1, at + 7)
        ids = {"sfvault.job_id": "data-Account", "sfvault.object": "Account"}
        chunk = span("sql put_records", "storage", "CLIENT", server, at + 2, at + 6, **ids, **{
            "sfvault.chunk.seq": seq, "sfvault.chunk.records": 10, "db.system.name": "postgresql"})  # fmt: skip
        statements = [span("INSERT", "storage", "CLIENT", chunk, at + 3, at + 4, **{"db.system": "postgresql"})]
        statements.append(span("SELECT", "storage", "CLIENT", chunk, at + 4, at + 5, **{"db.system": "postgresql"}))
        spans += [client, server, chunk, *statements]
    return spans


def shown(spans: list[FileSpan], limit: int, depth: int = 0) -> list[str]:
    out = Console(file=io.StringIO(), width=200, color_system=None)
    out.print(trace.tree(SESSION, spans, limit, depth))
    return out.file.getvalue().splitlines()  # type: ignore[attr-defined]


def test_the_tree_hops_across_nats_and_grpc_and_counts_statements() -> None:
    lines = shown(backup(chunks=2), limit=5)
    assert lines[0].startswith(f"session {SESSION}: 900ms, ")
    assert "StartSession" in lines[1]
    text = "\n".join(lines)
    assert "discovery process SessionRequested" in text and "publish" not in text
    assert "jobrunner process JobSpec job=data-Account" in text
    chunk_lines = [line for line in lines if "storage sql put_records" in line]
    assert [("chunk=1" in c, "chunk=2" in c) for c in chunk_lines] == [(True, False), (False, True)]
    assert all("records=10" in c and "job=" not in c for c in chunk_lines)  # the job is said once, above
    assert sum("jobrunner→storage PutRecords" in line for line in lines) == 2
    assert sum("2 x total 2ms, longest 1ms storage SQL" in line for line in lines) == 2


def test_many_siblings_of_one_kind_are_one_line_with_their_records() -> None:
    condensed = shown(backup(chunks=7), limit=5)
    [calls] = [line for line in condensed if "PutRecords" in line]
    assert "7 x total 56ms, longest 8ms jobrunner→storage PutRecords" in calls and "records=70" in calls
    assert not any("put_records" in line for line in condensed)
    every = shown(backup(chunks=7), limit=0)
    assert sum("storage sql put_records" in line for line in every) == 7


def test_depth_stops_at_the_jobs() -> None:
    lines = shown(backup(chunks=2), limit=5, depth=3)
    assert len(lines) == 4 and "jobrunner process JobSpec job=data-Account" in lines[-1]


def test_a_session_is_named_by_a_unique_start_of_its_id() -> None:
    spans = backup(chunks=1)
    other = replace(span("process JobSpec", "jobrunner", "CONSUMER", None, 0, 1), trace_id="cd" * 16)
    other = replace(other, attributes={"sfvault.session_id": "3f2bffff"})
    unnamed = replace(span("SELECT", "storage", "CLIENT", spans[-1], 0, 1), attributes={})  # in its trace
    found, of_session = trace.session_spans([*spans, other, unnamed], "3f2a")
    assert found == SESSION and of_session == [*spans, unnamed]
    with pytest.raises(CodedError) as several:
        trace.session_spans([*spans, other], "3f2")
    assert several.value.code == "invalid_argument" and "3f2bffff" in str(several.value)
    with pytest.raises(CodedError) as none:
        trace.session_spans(spans, "ffff")
    assert none.value.code == "not_found"


def test_the_trace_file_holds_the_sdks_spans_one_json_line_each(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    provider = TracerProvider(resource=Resource.create({"service.name": "storage"}))
    provider.add_span_processor(SimpleSpanProcessor(tracefile.exporter(path)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        tracer.start_span("child", set_span_in_context(parent), attributes={"sfvault.chunk.records": 3}).end()
    provider.shutdown()
    with path.open("a") as f:
        f.write('{"trace_id": "cut sh')  # a service killed mid-write
    child, root = tracefile.read(path)
    assert (root.name, root.service, root.kind, root.parent_id) == ("parent", "storage", "SERVER", "")
    assert child.parent_id == root.span_id and child.trace_id == root.trace_id
    assert child.attributes == {"sfvault.chunk.records": 3} and child.duration_s >= 0
    assert path.stat().st_mode & 0o777 == 0o600
