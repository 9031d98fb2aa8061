"""Acceptance: a real backup, every service a separate process exporting OTLP to a receiver in this test,
forms one trace for the session with spans from all four services, linked across NATS (publish -> consume);
no attribute holds a secret or a record value."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api

from devstack.localstack import SERVICES, local_stack
from services.cli import local
from services.cli.client import Clients
from sforg.testing import Admin
from tests.e2e.conftest import endpoints, register

pytestmark = pytest.mark.e2e
SF_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")
ACCESS_TOKEN = re.compile(r"[A-Za-z0-9]{15}!AQ")  # how the org emulator (like Salesforce) shapes access tokens


@dataclass
class Span:
    service: str
    span: trace_pb2.Span

    @property
    def attributes(self) -> dict[str, Any]:
        return {a.key: _value(a.value) for a in self.span.attributes}


@dataclass
class Receiver:
    """An OTLP/gRPC collector in memory: keeps every span and metric the services export."""

    spans: list[Span] = field(default_factory=list)
    metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, request: Any) -> Any:
        with self.lock:
            if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
                for rs in request.resource_spans:
                    service = _attrs(rs.resource.attributes).get("service.name", "")
                    self.spans.extend(Span(service, s) for ss in rs.scope_spans for s in ss.spans)
                return trace_service_pb2.ExportTraceServiceResponse()
            self.metrics.append(request)
            return metrics_service_pb2.ExportMetricsServiceResponse()

    def every_attribute_value(self) -> list[str]:
        """Span, event, link, resource and metric data point attributes, as text."""
        with self.lock:
            values = [str(v) for s in self.spans for v in s.attributes.values()]
            for s in self.spans:
                values += [str(v) for e in s.span.events for v in _attrs(e.attributes).values()]
                values += [str(v) for link in s.span.links for v in _attrs(link.attributes).values()]
                values.append(s.span.name)
                values.append(s.span.status.message)
            for request in self.metrics:
                for rm in request.resource_metrics:
                    values += [str(v) for v in _attrs(rm.resource.attributes).values()]
                    for sm in rm.scope_metrics:
                        for metric in sm.metrics:
                            kind = metric.WhichOneof("data")
                            for point in getattr(metric, kind).data_points if kind else ():
                                values += [str(v) for v in _attrs(point.attributes).values()]
        return values

    def metric_names(self) -> set[str]:
        return {
            m.name for r in self.metrics for rm in r.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }


def _value(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attrs(attributes: Any) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in attributes}


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.receiver.take(request)


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.receiver.take(request)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    collected = Receiver()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceServicer(collected), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(collected), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield collected, port
    server.stop(0)


def test_one_trace_per_session_across_all_services(tmp_path: Path, receiver: tuple[Receiver, int]) -> None:
    collected, port = receiver
    home = tmp_path / "stack"
    env = local.prepare_auth(home) | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    with local_stack(home, with_org="tiny", org_seed=3, extra_env=env) as stack:
        assert stack.org is not None
        org = stack.org
        c = Clients(endpoints(stack, home))
        try:
            register(c, org, home)
            started = c.session.StartSession(api.StartSessionRequest(policy_id="p1", org_id="o1", trigger="test"))
            final = None
            for update in c.session.WatchSession(api.WatchSessionRequest(session_id=started.session_id), timeout=300):
                final = update
            assert final is not None and final.status == pb.SESSION_STATUS_SUCCESS, final
            truth = Admin(org).ground_truth()
        finally:
            c.close()
    # leaving local_stack stopped every service with SIGTERM: each flushed its spans and metrics on the way out

    session_id = started.session_id
    [start] = [s for s in collected.spans if s.span.name == "/sfvault.session.v1.SessionService/StartSession"]
    trace_id = start.span.trace_id
    in_trace = [s for s in collected.spans if s.span.trace_id == trace_id]
    of_session = [s for s in collected.spans if s.attributes.get("sfvault.session_id") == session_id]
    elsewhere = sorted({(s.service, s.span.name) for s in of_session if s.span.trace_id != trace_id})
    assert of_session and not elsewhere, f"the session's work is one trace; also in others: {elsewhere}"
    assert {s.service for s in in_trace} == set(SERVICES)

    # linked across NATS: each service's CONSUMER spans are children of PRODUCER spans of another service
    by_id = {s.span.span_id: s for s in in_trace}
    consumer_kind, producer_kind = trace_pb2.Span.SPAN_KIND_CONSUMER, trace_pb2.Span.SPAN_KIND_PRODUCER
    crossings = set()
    for s in in_trace:
        if s.span.kind == consumer_kind:
            parent = by_id.get(s.span.parent_span_id)
            assert parent is not None and parent.span.kind == producer_kind, s.span.name
            crossings.add((parent.service, parent.span.name, s.service))
    assert ("session", "publish SessionRequested", "discovery") in crossings
    assert ("discovery", "publish JobSpec", "jobrunner") in crossings
    assert ("storage", "publish ChunkUploaded", "session") in crossings

    names = {(s.service, s.span.name) for s in in_trace}
    assert ("storage", "sql put_records") in names
    # psycopg's statement spans, inside the chunk's transaction, carry the session
    assert any(
        s.service == "storage" and s.attributes.get("db.system") == "postgresql" and s.span.name != "sql put_records"
        for s in of_session
    )
    assert ("storage", "/sfvault.storage.v1.StorageService/PutRecords") in names
    assert ("jobrunner", "/sfvault.storage.v1.StorageService/PutRecords") in names
    assert any(svc == "jobrunner" and name.startswith("GET /services/data/") for svc, name in names)
    assert any(svc == "discovery" and name.startswith("GET /services/data/") for svc, name in names)
    assert ("session", "publish SessionFinished") in names
    assert not any("grpc.health" in name for _, name in names)
    objects = {s.attributes.get("sfvault.object") for s in in_trace if s.service == "storage"}
    assert "Account" in objects
    assert {"sfvault.records.backed_up", "sfvault.chunk.duration", "sfvault.salesforce.api_calls"} <= (
        collected.metric_names()
    )
    # and services/platform/metrics.py's, over OTLP as on the Prometheus endpoints (tests/e2e/test_observability)
    assert {"sfvault.bytes.stored", "sfvault.jobs.finished", "sfvault.session.duration", "sfvault.consumer.lag"} <= (
        collected.metric_names()
    )

    # no secret and no record value in any attribute
    text = "\x00".join(collected.every_attribute_value())
    secrets = [
        org["client_secret"],
        (home / "auth.key").read_text().strip(),
        (home / "admin.token").read_text().strip(),
    ]
    secrets += [org[k] for k in ("password", "security_token") if org.get(k)]
    for secret in secrets:
        assert secret not in text
    assert not ACCESS_TOKEN.search(text)
    object_names = set(truth["objects"])
    values = {
        v
        for name in ("Account", "Contact", "Opportunity", "Case")
        for record in list(truth["objects"].get(name, {}).values())[:100]
        for v in record.values()
        if isinstance(v, str) and len(v) >= 8 and not SF_ID.match(v) and v not in object_names and not v[:4].isdigit()
    }
    assert len(values) > 50
    leaked = [v for v in values if v in text]
    assert not leaked, leaked[:5]
