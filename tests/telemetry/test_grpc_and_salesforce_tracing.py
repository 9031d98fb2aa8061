"""gRPC client/server spans (health excluded) and Salesforce HTTP spans, from the instrumentation libraries,
that hold no query text, token or exception message; SQL statement spans from psycopg's; the chunk span with
its metrics, and telemetry set-up
from the OTEL_* variables."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import psycopg
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.trace import SpanKind

from services.platform import auth, telemetry
from services.platform.grpcserver import GrpcServer, start_grpc_server
from services.sfclient import Credentials, new_http_session
from tests.telemetry.conftest import Captured


def _echo_service(_servicer: Any, server: grpc.aio.Server) -> None:
    async def say(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if request == b"missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        if request == b"boom":
            raise RuntimeError("Secret Corp")  # an exception's message may quote a record value
        return request

    handler = grpc.unary_unary_rpc_method_handler(say)  # raw bytes: no serializers needed
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {"Say": handler}),))


@pytest.fixture
async def echo_server() -> Any:
    server: GrpcServer = await start_grpc_server([(_echo_service, None, "test.Echo")], port=0, host="127.0.0.1")
    await server.set_serving(True)
    yield server
    await server.stop(0)


async def test_client_and_server_spans_share_the_trace_and_health_is_not_traced(
    captured: Captured, echo_server: GrpcServer
) -> None:
    async with auth.aio_channel(f"127.0.0.1:{echo_server.port}", "token-not-to-be-traced") as channel:
        say = channel.unary_unary("/test.Echo/Say")
        assert await say(b"hello") == b"hello"
        with pytest.raises(grpc.aio.AioRpcError):
            await say(b"missing")
        health = health_pb2_grpc.HealthStub(channel)
        await health.Check(health_pb2.HealthCheckRequest(service=""))

    clients = [s for s in captured.spans() if s.kind == SpanKind.CLIENT]
    servers = [s for s in captured.spans() if s.kind == SpanKind.SERVER]
    assert [s.name for s in clients] == ["/test.Echo/Say"] * 2  # the library names a call by its full method
    assert [s.name for s in servers] == ["/test.Echo/Say"] * 2
    for client, server in zip(clients, servers, strict=True):
        assert server.context.trace_id == client.context.trace_id
        assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert servers[1].attributes is not None
    assert servers[1].attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert clients[1].status.status_code.name == "ERROR"
    assert servers[1].status.status_code.name == "UNSET"  # the caller's mistake is not the server's error
    assert all("token-not-to-be-traced" not in str(s.attributes) for s in captured.spans())


async def test_blocking_channel_spans(captured: Captured, echo_server: GrpcServer) -> None:
    def call() -> bytes:
        with auth.channel(f"127.0.0.1:{echo_server.port}", "t") as channel:
            return channel.unary_unary("/test.Echo/Say")(b"hi", timeout=10)  # type: ignore[no-any-return]

    with telemetry.scope(session_id="s1", job_id="j1", object_name="Account"):
        assert await asyncio.to_thread(call) == b"hi"  # to_thread copies the context, as the jobrunner does
    [client] = [s for s in captured.spans() if s.kind == SpanKind.CLIENT]
    [server] = [s for s in captured.spans() if s.kind == SpanKind.SERVER]
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert client.attributes is not None and client.attributes["sfvault.object"] == "Account"


class FakeSalesforce(requests.adapters.BaseAdapter):
    """Answers every request from memory, as the org would, and remembers the URLs asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.urls.append(request.url or "")
        response = requests.Response()
        response.status_code = 200
        response.url = request.url or ""
        response.request = request
        if "/jobs/query/" in response.url:
            response.headers["Sforce-NumberOfRecords"] = "42"
            response.headers["Content-Type"] = "text/csv"
            response._content = b'"Id","Name"\n'
        else:
            response.headers["Content-Type"] = "application/json;charset=UTF-8"
            response._content = b'{"totalSize":3,"done":true,"records":[{"Name":"Secret Corp"}]}'
        return response

    def close(self) -> None:
        pass


def test_salesforce_spans_hold_no_query_values_token_or_ids(captured: Captured) -> None:
    session = new_http_session(Credentials(login_url="https://login.example", auth_flow="client_credentials"))
    fake = FakeSalesforce()
    session.mount("https://", fake)
    token = "00D000000000001!AQ-access-token"
    headers = {"Authorization": f"Bearer {token}"}
    base = "https://org.example/services/data/v62.0"
    session.get(f"{base}/queryAll/", params={"q": "SELECT Id FROM Account WHERE Name = 'Secret Corp'"}, headers=headers)
    session.get(f"{base}/jobs/query/750000000000001AAA/results", params={"locator": "abc"}, headers=headers)
    session.get(f"{base}/sobjects/ContentVersion/068000000000001AAA/VersionData", headers=headers)

    query, bulk, blob = captured.spans()
    assert query.name == "GET /services/data/v62.0/queryAll/"
    assert bulk.name == "GET /services/data/v62.0/jobs/query/{id}/results"
    assert blob.name == "GET /services/data/v62.0/sobjects/ContentVersion/{id}/VersionData"
    assert query.attributes is not None and bulk.attributes is not None and blob.attributes is not None
    assert query.attributes["sfvault.salesforce.total_size"] == 3
    assert bulk.attributes["sfvault.salesforce.rows"] == 42
    assert blob.attributes["sfvault.object"] == "ContentVersion"
    assert all(s.attributes and s.attributes["http.response.status_code"] == 200 for s in (query, bulk, blob))
    text = repr([dict(s.attributes or {}) for s in captured.spans()])
    for forbidden in ("Secret", "SELECT", token, "068000000000001AAA", "locator"):
        assert forbidden not in text


class Unreachable(requests.adapters.BaseAdapter):
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        raise requests.ConnectionError(f"Max retries exceeded with url: {request.url}")  # as urllib3 words it

    def close(self) -> None:
        pass


async def test_library_spans_keep_no_exception_message_or_header(
    captured: Captured, echo_server: GrpcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gRPC and Salesforce HTTP spans come from the instrumentation libraries; what they would describe an
    error with (the server's message, str(exception) with the URL and its SOQL) is reduced to its type, and
    headers are not captured even when the settings ask for them (a request's carry the bearer token)."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", ".*")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE", ".*")
    captured.reinstall()
    async with auth.aio_channel(f"127.0.0.1:{echo_server.port}", "t") as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await channel.unary_unary("/test.Echo/Say")(b"boom")
    session = new_http_session(Credentials(login_url="https://login.example", auth_flow="client_credentials"))
    session.mount("https://", Unreachable())
    with pytest.raises(requests.ConnectionError):
        session.get(
            "https://org.example/services/data/v62.0/query/",
            params={"q": "SELECT Id FROM Account"},
            headers={"Authorization": "Bearer 00D000000000001!AQ-access-token"},
        )
    session.mount("https://", FakeSalesforce())
    session.get("https://org.example/services/data/v62.0/limits/", headers={"Authorization": "Bearer 00D!AQ-x"})

    def library(span: Any) -> str:
        return getattr(span.instrumentation_scope, "name", "")

    client, server, http = (
        next(s for s in captured.spans() if s.kind == kind and library(s) == f"opentelemetry.instrumentation.{name}")
        for kind, name in ((SpanKind.CLIENT, "grpc"), (SpanKind.SERVER, "grpc"), (SpanKind.CLIENT, "requests"))
    )
    assert client.status.status_code.name == "ERROR" and http.status.status_code.name == "ERROR"
    assert server.attributes is not None and server.attributes["error.type"] == "RuntimeError"
    assert http.attributes is not None and http.attributes["error.type"] == "ConnectionError"
    assert http.name == "GET /services/data/v62.0/query/"
    for span in captured.spans():
        text = repr([span.status.description, dict(span.attributes or {}), [e.attributes for e in span.events]])
        assert "Secret" not in text and "SELECT" not in text and "!AQ" not in text, text
        assert not any(key.startswith("http.request.header.") for key in span.attributes or {})


def test_salesforce_route() -> None:
    assert telemetry.salesforce_route("https://x/services/data/v62.0/query/01gD0000000abcdIAA-2000?x=1") == (
        "/services/data/v62.0/query/{id}",
        "",
    )
    assert telemetry.salesforce_route("https://x/services/data/v62.0/sobjects/Account/describe") == (
        "/services/data/v62.0/sobjects/Account/describe",
        "Account",
    )


def test_chunk_span_and_metrics_count_a_chunk_once(captured: Captured) -> None:
    for replayed in (False, True):
        with telemetry.chunk_transaction(
            "put_records", session_id="s1", job_id="j1", object_name="Account", records=200, chunk_seq=1
        ) as chunk:
            chunk.stored(replayed=replayed)
    spans = captured.named("sql put_records")
    assert len(spans) == 2 and all(s.attributes and s.attributes["db.system.name"] == "postgresql" for s in spans)
    [records] = captured.metric_points("sfvault.records.backed_up")
    assert records.value == 200
    [latency] = captured.metric_points("sfvault.chunk.duration")
    assert latency.count == 2


async def test_sql_statements_are_spans_inside_the_chunk_span_without_their_text(
    captured: Captured, database_url: str
) -> None:
    """psycopg's instrumentation: a CLIENT span per statement on connections opened while spans are recorded,
    a child of the chunk's span, with the scope's ids and no statement text or parameter."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        with telemetry.chunk_transaction("put_records", session_id="s1", job_id="j1", object_name="Account"):
            await conn.execute("SELECT %s::text", ("Secret Corp",))
    [chunk] = captured.named("sql put_records")
    [statement] = captured.named("SELECT")
    assert statement.kind == SpanKind.CLIENT and statement.parent is not None
    assert statement.parent.span_id == chunk.context.span_id
    attributes = dict(statement.attributes or {})
    assert attributes["db.system"] == "postgresql" and attributes["sfvault.session_id"] == "s1"
    assert "Secret" not in repr(attributes) and not any(k.startswith(("db.statement", "db.query")) for k in attributes)


def test_job_and_session_metrics(captured: Captured) -> None:
    consumed = telemetry.Consumed("sfvault.jobs.data", {}, "JobSpec", "s1", "j1")
    with telemetry.running_job(consumed, object_name="Account", job_type="data"):
        [running] = captured.metric_points("sfvault.jobs.running")
        assert running.value == 1
    [running] = captured.metric_points("sfvault.jobs.running")
    assert running.value == 0
    telemetry.session_finished("success")
    telemetry.stall_terminated()
    telemetry.salesforce_call("00D000000000001", (100, 15000))
    [outcome] = captured.metric_points("sfvault.sessions.finished")
    assert outcome.attributes == {"sfvault.session.status": "success"} and outcome.value == 1
    assert captured.metric_points("sfvault.jobs.stall_terminations")[0].value == 1
    assert captured.metric_points("sfvault.salesforce.api_requests.left")[0].value == 14900
    [job_span] = captured.named("process JobSpec")
    assert job_span.attributes is not None and job_span.attributes["sfvault.object"] == "Account"


def test_nothing_is_instrumented_while_no_span_is_recorded() -> None:
    """Without a provider (no OTEL endpoint), servers and channels get no interceptor and requests is not
    patched: telemetry costs the hot paths (PutRecords, Bulk pages) nothing."""
    telemetry.install()
    assert telemetry.server_interceptors() == [] and telemetry.aio_client_interceptors() == []
    channel = grpc.insecure_channel("127.0.0.1:1")
    assert telemetry.traced_channel(channel) is channel
    channel.close()
    assert not RequestsInstrumentor().is_instrumented_by_opentelemetry
    assert not PsycopgInstrumentor().is_instrumented_by_opentelemetry


def test_setup_exports_only_when_asked() -> None:
    assert telemetry.setup("x", {}).tracer_provider is None  # no endpoint: nothing exported, no SDK cost
    assert telemetry.setup("x", {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}).tracer_provider is None
    choice = telemetry._exporter_choice
    assert choice("traces", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}) == "otlp"
    assert choice("traces", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}) == "none"
    assert choice("metrics", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317"}) == "none"
    with pytest.raises(SystemExit, match="OTEL_TRACES_EXPORTER"):
        choice("traces", {"OTEL_TRACES_EXPORTER": "zipkin"})
