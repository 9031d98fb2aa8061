"""OpenTelemetry for every service: set-up from the standard OTEL_* variables, sfvault's own spans and metrics
(NATS publish/consume with the trace context in the message headers, the job, the chunk's SQL transaction), and
the instrumentation libraries' spans of gRPC calls, Salesforce HTTP and SQL statements (psycopg).

`install()` takes the providers as parameters, so tests use the SDK's in-memory exporter and reader. Span
attributes carry ids, object names, counts and status codes only: never a token, a query text or a value. The
libraries' spans go through one tracer of ours (`_LibraryTracer`) that enforces that: URL attributes keep the
scheme, host and path with Ids replaced, captured headers and statement texts are dropped, an exception is
recorded as its type.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

if TYPE_CHECKING:  # the SDK and the instrumentation libraries are imported where they are used: a process that
    # records nothing (the CLI, a service without an exporter) does not pay their import (a third of a second)
    import grpc
    import requests
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)
NAME = "sfvault"
SESSION_ID = "sfvault.session_id"
JOB_ID = "sfvault.job_id"
OBJECT = "sfvault.object"


# ---- set-up -----------------------------------------------------------------------------------------------


@dataclass
class Instruments:
    records_backed_up: metrics.Counter
    chunk_latency: metrics.Histogram
    api_calls: metrics.Counter
    # the synchronous gauge's class is still private in opentelemetry.metrics (metrics._Gauge)
    api_requests_used: Any
    api_requests_left: Any
    jobs_running: metrics.UpDownCounter
    stall_terminations: metrics.Counter
    session_outcomes: metrics.Counter
    # what an operator's dashboard needs beside them (recorded by services.platform.metrics' hooks)
    bytes_stored: metrics.Counter
    jobs_finished: metrics.Counter
    session_duration: metrics.Histogram
    consumer_lag: Any

    @classmethod
    def create(cls, meter: metrics.Meter) -> Instruments:
        return cls(
            records_backed_up=meter.create_counter(
                "sfvault.records.backed_up", unit="{record}", description="records received in committed chunks"
            ),
            chunk_latency=meter.create_histogram(
                "sfvault.chunk.duration", unit="s", description="time to store one chunk (its SQL transaction)"
            ),
            api_calls=meter.create_counter(
                "sfvault.salesforce.api_calls", unit="{call}", description="Salesforce API calls sfvault made"
            ),
            api_requests_used=meter.create_gauge(
                "sfvault.salesforce.api_requests.used", unit="{request}", description="the org's daily API usage"
            ),
            api_requests_left=meter.create_gauge(
                "sfvault.salesforce.api_requests.left", unit="{request}", description="daily API requests left"
            ),
            jobs_running=meter.create_up_down_counter("sfvault.jobs.running", unit="{job}", description="jobs now"),
            stall_terminations=meter.create_counter(
                "sfvault.jobs.stall_terminations", unit="{job}", description="jobs terminated by the stall timeout"
            ),
            session_outcomes=meter.create_counter(
                "sfvault.sessions.finished", unit="{session}", description="sessions ended, by status"
            ),
            bytes_stored=meter.create_counter(
                "sfvault.bytes.stored", unit="By", description="bytes of records and files storage received, by kind"
            ),
            jobs_finished=meter.create_counter(
                "sfvault.jobs.finished", unit="{job}", description="jobs reported, by job type and outcome"
            ),
            session_duration=meter.create_histogram(
                "sfvault.session.duration", unit="s", description="from a session's start to its end, by status"
            ),
            consumer_lag=meter.create_gauge(
                "sfvault.consumer.lag", unit="{message}", description="messages a durable consumer has yet to take"
            ),
        )


@dataclass
class _State:
    tracer: trace.Tracer
    instruments: Instruments
    provider: trace.TracerProvider | None = None  # None: the global one
    # False while no SDK provider is installed: the NATS paths then skip even extracting the context, which
    # costs tens of microseconds per message in batches of hundreds
    tracing: bool = False


# Until install() runs, the API's proxies are used: no-ops, or the global providers once they are set.
_state = _State(trace.get_tracer(NAME), Instruments.create(metrics.get_meter(NAME)))


def install(tracer_provider: trace.TracerProvider | None = None, meter_provider: Any = None) -> None:
    """Make sfvault's spans and metrics use these providers (None: the global ones)."""
    _state.tracer = trace.get_tracer(NAME, tracer_provider=tracer_provider)
    _state.tracing = tracer_provider is not None or not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
    )
    _state.instruments = Instruments.create(metrics.get_meter(NAME, meter_provider=meter_provider))
    _state.provider = tracer_provider
    if _state.tracing:
        # the stable HTTP attribute names (http.request.method, url.full, http.response.status_code), not the
        # library's default of the older ones; read once per process, at the first instrument()
        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    if not _state.tracing and not any(name in sys.modules for name in _INSTRUMENTATIONS):
        return  # nothing recorded, nothing ever patched: the libraries are not even imported
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    _patched_while_tracing(
        RequestsInstrumentor(),
        meter_provider=metrics.NoOpMeterProvider(),  # sfvault.salesforce.api_calls counts the calls
        request_hook=_salesforce_request,
        response_hook=_salesforce_response,
    )
    # a span per statement (execute/executemany; COPY is not traced by the library) on the connections opened
    # from now on, inside the chunk's span where there is one
    _patched_while_tracing(PsycopgInstrumentor())


_INSTRUMENTATIONS = ("opentelemetry.instrumentation.requests", "opentelemetry.instrumentation.psycopg")


def _patched_while_tracing(instrumentor: BaseInstrumentor, **options: Any) -> None:
    """An instrumentation library patches its library (requests.Session.send, psycopg's connect) only while
    spans are recorded, and makes its spans through our tracer (_LIBRARIES)."""
    if instrumentor.is_instrumented_by_opentelemetry and not _state.tracing:
        instrumentor.uninstrument()
    elif _state.tracing and not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=_LIBRARIES, skip_dep_check=True, **options)


def tracer() -> trace.Tracer:
    return _state.tracer


def instruments() -> Instruments:
    return _state.instruments


@dataclass
class Telemetry:
    """What setup() configured; shutdown() flushes what is buffered (call it on SIGTERM, after draining)."""

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def _exporter_choice(signal: str, environ: Mapping[str, str]) -> str:
    """ "otlp", "console" or "none" for traces/metrics. Unset: OTLP only when an endpoint is configured."""
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    chosen = environ.get(variable, "").strip().lower()
    if not chosen:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
        )
        return "otlp" if endpoint else "none"
    if chosen not in ("otlp", "console", "none"):
        raise SystemExit(f"{variable}={chosen!r} is not supported: use otlp, console or none")
    return chosen


def setup(service_name: str, environ: Mapping[str, str] | None = None) -> Telemetry:
    """Configure traces and metrics from the OTEL_* variables (OTEL_SERVICE_NAME overrides service_name).

    OTLP over gRPC only (OTEL_EXPORTER_OTLP_PROTOCOL=grpc); the exporter reads its endpoint, headers and
    TLS settings from the environment itself, and the batch processor and metric reader their intervals.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return Telemetry()
    traces, metric_exporter = _exporter_choice("traces", env), _exporter_choice("metrics", env)
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").strip().lower()
    if "otlp" in (traces, metric_exporter) and protocol != "grpc":
        raise SystemExit(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: sfvault exports OTLP over grpc")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create({} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name})
    result = Telemetry()
    if traces != "none":
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

        span_exporter: SpanExporter
        if traces == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            span_exporter = OTLPSpanExporter()
        else:
            span_exporter = ConsoleSpanExporter()
        result.tracer_provider = TracerProvider(resource=resource)
        result.tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        trace.set_tracer_provider(result.tracer_provider)
    if metric_exporter != "none":
        from opentelemetry.sdk.metrics.export import (
            ConsoleMetricExporter,
            MetricExporter,
            PeriodicExportingMetricReader,
        )

        exporter: MetricExporter
        if metric_exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            exporter = OTLPMetricExporter()
        else:
            exporter = ConsoleMetricExporter()
        result.meter_provider = MeterProvider(
            resource=resource, metric_readers=[PeriodicExportingMetricReader(exporter)]
        )
        metrics.set_meter_provider(result.meter_provider)
    install(result.tracer_provider, result.meter_provider)
    if result.tracer_provider or result.meter_provider:
        log.info("telemetry: traces %s, metrics %s", traces, metric_exporter)
    return result


# ---- attributes every span inside a job or chunk carries ----------------------------------------------------

_scope: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "sfvault_telemetry_scope", default=MappingProxyType({})
)


def _ids(session_id: str = "", job_id: str = "", object_name: str = "") -> dict[str, str]:
    found = {SESSION_ID: session_id, JOB_ID: job_id, OBJECT: object_name}
    return {k: v for k, v in found.items() if v}


@contextlib.contextmanager
def scope(*, session_id: str = "", job_id: str = "", object_name: str = "") -> Iterator[None]:
    """Spans started inside (Salesforce calls, gRPC calls of a job) carry these ids as attributes."""
    token = _scope.set({**_scope.get(), **_ids(session_id, job_id, object_name)})
    try:
        yield
    finally:
        _scope.reset(token)


def _start(
    name: str,
    kind: SpanKind,
    attributes: Mapping[str, Any],
    parent: otel_context.Context | None = None,
    *,
    inherit: bool = True,
) -> Span:
    """Start a span; with `inherit`, it carries the ids of the scope it is started in."""
    merged = {**_scope.get(), **attributes} if inherit else attributes
    return _state.tracer.start_span(name, context=parent, kind=kind, attributes=merged)


@contextlib.contextmanager
def _noop() -> Iterator[None]:
    yield


@contextlib.contextmanager
def _current(span: Span) -> Iterator[Span]:
    """Make `span` current and end it on exit; an exception sets ERROR with its type only, because an
    exception's message may quote data (a record value, a server's answer)."""
    try:
        with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield span
    except BaseException as exc:
        if not isinstance(exc, GeneratorExit):
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()


# ---- NATS ---------------------------------------------------------------------------------------------------


class Consumed(NamedTuple):
    """What a CONSUMER span needs of one delivered message."""

    subject: str
    headers: Mapping[str, str]
    kind: str  # event type, or "JobSpec"
    session_id: str = ""
    job_id: str = ""
    message_id: str = ""


# The consumed message of each session in the batch in hand: a publish for that session continues its trace
# even when the batch mixes sessions (the session service folds hundreds of events at once).
_batch_parents: contextvars.ContextVar[Mapping[str, otel_context.Context]] = contextvars.ContextVar(
    "sfvault_batch_parents", default=MappingProxyType({})
)


@contextlib.contextmanager
def publishing(
    subject: str, headers: dict[str, str], *, kind: str, message_id: str, session_id: str = "", job_id: str = ""
) -> Iterator[Span]:
    """A PRODUCER span around one publish; its context is injected into `headers`."""
    if not _state.tracing:
        yield trace.INVALID_SPAN
        return
    parent = _batch_parents.get().get(session_id) if session_id else None
    span = _start(
        f"publish {kind}",
        SpanKind.PRODUCER,
        {
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.destination.name": subject,
            "messaging.message.id": message_id,
            **_ids(session_id, job_id),
        },
        parent,
        inherit=False,  # a message names its own session and job (the scope may be another job's)
    )
    with _current(span):
        propagate.inject(headers)
        yield span


@contextlib.contextmanager
def consuming(consumer: str, messages: Sequence[Consumed], *, object_name: str = "") -> Iterator[None]:
    """One CONSUMER span per message in hand, each a child of its publisher's span (from the headers), for
    as long as the batch is processed. With one message, its span is the current one."""
    if not _state.tracing:
        with scope(session_id=messages[0].session_id, job_id=messages[0].job_id) if len(messages) == 1 else _noop():
            yield
        return
    spans: list[Span] = []
    parents: dict[str, otel_context.Context] = dict(_batch_parents.get())
    for m in messages:
        span = _start(
            f"process {m.kind}",
            SpanKind.CONSUMER,
            {
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "messaging.destination.name": m.subject,
                "messaging.consumer.group.name": consumer,
                "messaging.message.id": m.message_id,
                "messaging.batch.message_count": len(messages),
                **_ids(m.session_id, m.job_id, object_name),
            },
            propagate.extract(m.headers),
            inherit=False,
        )
        spans.append(span)
        if m.session_id:
            parents[m.session_id] = trace.set_span_in_context(span)
    token = _batch_parents.set(parents)
    try:
        if len(spans) == 1:
            with _current(spans[0]), scope(session_id=messages[0].session_id, job_id=messages[0].job_id):
                yield
            return
        try:
            yield
        except BaseException as exc:
            for span in spans:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            for span in spans:
                span.end()
    finally:
        _batch_parents.reset(token)


@contextlib.contextmanager
def running_job(consumed: Consumed, *, object_name: str, job_type: str) -> Iterator[None]:
    """A job taken from JOBS: its CONSUMER span (current meanwhile), its ids on every span inside, and the
    jobs-running gauge. Run the job's thread in a copy of this context (contextvars.copy_context)."""
    attributes = {"sfvault.job_type": job_type}
    _state.instruments.jobs_running.add(1, attributes)
    try:
        with consuming("jobrunner", [consumed], object_name=object_name), scope(object_name=object_name):
            trace.get_current_span().set_attribute("sfvault.job_type", job_type)
            yield
    finally:
        _state.instruments.jobs_running.add(-1, attributes)


# ---- the chunk's SQL transaction (storage) -------------------------------------------------------------------


class ChunkSpan:
    def __init__(self, span: Span) -> None:
        self.span = span
        self.replayed = False

    def stored(self, *, replayed: bool) -> None:
        self.replayed = replayed
        self.span.set_attribute("sfvault.chunk.replayed", replayed)


@contextlib.contextmanager
def chunk_transaction(
    operation: str, *, session_id: str, job_id: str, object_name: str = "", records: int = 0, chunk_seq: int = 0
) -> Iterator[ChunkSpan]:
    """A span around the SQL transaction that stores one chunk (its statements' spans inside carry its ids); the
    chunk-latency histogram, and the records counter once the chunk is stored for the first time (not on a
    replay)."""
    span = _start(
        f"sql {operation}",
        SpanKind.CLIENT,
        {
            "db.system.name": "postgresql",
            "db.operation.name": operation,
            "sfvault.chunk.seq": chunk_seq,
            "sfvault.chunk.records": records,
            **_ids(session_id, job_id, object_name),
        },
    )
    chunk = ChunkSpan(span)
    started = time.perf_counter()
    with _current(span), scope(session_id=session_id, job_id=job_id, object_name=object_name):  # its statements'
        yield chunk
    attributes = {"sfvault.operation": operation, **({OBJECT: object_name} if object_name else {})}
    _state.instruments.chunk_latency.record(time.perf_counter() - started, attributes)
    if records and not chunk.replayed:
        _state.instruments.records_backed_up.add(records, attributes)


# ---- session outcomes (session service) ----------------------------------------------------------------------


def session_finished(status: str) -> None:
    _state.instruments.session_outcomes.add(1, {"sfvault.session.status": status})


def stall_terminated() -> None:
    _state.instruments.stall_terminations.add(1)


# ---- the instrumentation libraries' spans ---------------------------------------------------------------------

_URL_KEYS = ("http.url", "url.full")
# captured headers (a request's carry the bearer token), and a statement's text and parameters (psycopg's)
_DROPPED_PREFIXES = (
    "http.request.header.",
    "http.response.header.",
    "db.statement",
    "db.query.text",
    "db.query.parameter.",
)


def _allowed(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The scope's ids with `attributes`; a URL cut to its route (no query: SOQL carries literal values; no Id),
    captured headers (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*) and SQL texts dropped."""
    merged = {**_scope.get(), **attributes}
    for key in _URL_KEYS:
        if isinstance(merged.get(key), str):
            parts = urlsplit(merged[key])
            merged[key] = f"{parts.scheme}://{parts.hostname or ''}{salesforce_route(merged[key])[0]}"
    return {k: v for k, v in merged.items() if not k.startswith(_DROPPED_PREFIXES)}


class _Discreet(trace.Span):
    """A library's span that keeps no exception message, status description, captured header or SQL text."""

    def __init__(self, span: Span) -> None:
        self._span = span

    def end(self, end_time: int | None = None) -> None:
        self._span.end(end_time)

    def get_span_context(self) -> trace.SpanContext:
        return self._span.get_span_context()

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._span.set_attributes({k: v for k, v in attributes.items() if not k.startswith(_DROPPED_PREFIXES)})

    def set_attribute(self, key: str, value: Any) -> None:
        if not key.startswith(_DROPPED_PREFIXES):
            self._span.set_attribute(key, value)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        self._span.add_event(name, timestamp=timestamp)

    def add_link(self, context: trace.SpanContext, attributes: Any = None) -> None:
        self._span.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self._span.update_name(name)

    def is_recording(self) -> bool:
        return self._span.is_recording()

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # the libraries describe with the server's message or str(exception): a URL with its query, a value
        self._span.set_status(status.status_code if isinstance(status, Status) else status)

    def record_exception(
        self, exception: BaseException, attributes: Any = None, timestamp: int | None = None, escaped: bool = False
    ) -> None:
        self._span.set_attribute("error.type", type(exception).__name__)


class _LibraryTracer(trace.Tracer):
    """The instrumentation libraries' tracer: spans of the provider install() set last (the libraries take
    their tracer once, when a server, channel or instrumentor is made), with the scope's ids, made discreet."""

    def __init__(self, name: str, version: str | None, schema_url: str | None) -> None:
        self._scope_of = (name, version, schema_url)
        self._provider: trace.TracerProvider | None = None
        self._tracer: trace.Tracer = trace.NoOpTracer()

    def start_span(  # type: ignore[override]
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        if not _state.tracing:
            return trace.INVALID_SPAN
        provider = _state.provider or trace.get_tracer_provider()
        if provider is not self._provider:
            self._provider, self._tracer = provider, provider.get_tracer(*self._scope_of)
        span = self._tracer.start_span(name, context, kind, _allowed(attributes or {}), links, start_time)
        return _Discreet(span)

    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        *args: Any,  # context, kind, attributes, links, start_time: as start_span's
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
        **kwargs: Any,
    ) -> Iterator[Span]:
        span = self.start_span(name, *args, **kwargs)
        with trace.use_span(span, end_on_exit, record_exception, set_status_on_exception) as current:
            yield current


class _LibraryTracerProvider(trace.TracerProvider):
    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        return _LibraryTracer(instrumenting_module_name, instrumenting_library_version, schema_url)


_LIBRARIES = _LibraryTracerProvider()


# ---- Salesforce HTTP (opentelemetry-instrumentation-requests) ---------------------------------------------------

# Salesforce ids (15/18 characters, with a digit) and query locators ("01g...-2000") in a path become {id}, so
# span names stay few and no record is identified by its name.
_ID_SEGMENT = re.compile(r"^(?=[A-Za-z0-9-]*\d)[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?(?:-\d+)?$")
_TOTAL_SIZE = re.compile(rb'"totalSize"\s*:\s*(\d+)')


def salesforce_route(url: str) -> tuple[str, str]:
    """(path with ids replaced, object name if the path names one). The query string is dropped: SOQL
    carries literal values."""
    parts = urlsplit(url).path.split("/")
    route = "/".join("{id}" if _ID_SEGMENT.match(p) else p for p in parts)
    object_name = ""
    if "sobjects" in parts:
        following = parts[parts.index("sobjects") + 1 :]
        object_name = following[0] if following else ""
    return route, object_name


def _salesforce_request(span: Span, request: requests.PreparedRequest) -> None:
    """Named by method and route (the semantic conventions' `{method} {url.template}`), with the object."""
    route, object_name = salesforce_route(request.url or "")
    span.update_name(f"{request.method} {route}")
    span.set_attribute("url.template", route)
    if object_name and OBJECT not in _scope.get():
        span.set_attribute(OBJECT, object_name)


def _salesforce_response(span: Span, request: requests.PreparedRequest, response: requests.Response) -> None:
    """The rows a Bulk page or a query answered."""
    rows = response.headers.get("Sforce-NumberOfRecords", "")
    if rows.isdigit():
        span.set_attribute("sfvault.salesforce.rows", int(rows))
    # only a body already read: reading a streamed one (a Bulk page, a file) here would load it whole
    elif getattr(response, "_content_consumed", False) and "json" in response.headers.get("Content-Type", ""):
        found = _TOTAL_SIZE.search(response.content[:200])
        if found:
            span.set_attribute("sfvault.salesforce.total_size", int(found.group(1)))


def salesforce_call(org_id: str, usage: tuple[int, int] | None) -> None:
    """Count one API call; record the org's daily usage (from Sforce-Limit-Info) when it is known."""
    attributes = {"sfvault.salesforce.org_id": org_id} if org_id else {}
    _state.instruments.api_calls.add(1, attributes)
    if usage is not None:
        used, limit = usage
        _state.instruments.api_requests_used.set(used, attributes)
        _state.instruments.api_requests_left.set(max(limit - used, 0), attributes)


# ---- gRPC (opentelemetry-instrumentation-grpc) ------------------------------------------------------------------

# Servers and channels made while no spans are recorded get no interceptor and cost nothing: a service sets up
# telemetry before it makes them (config -> telemetry -> wiring).
# health and reflection are polled all the time and say nothing about a backup
UNTRACED_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _TRACED(details: Any) -> bool:
    """The library's filters (grpc_instrumentation.filters) would cost tens of microseconds a call: isinstance
    checks against typing Protocols, os.path on the method name."""
    method = getattr(details, "method", None) or getattr(details, "full_method", "")
    return not str(method.decode() if isinstance(method, bytes) else method).startswith(UNTRACED_METHODS)


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """A SERVER span per call (health and reflection excluded), child of the caller's span."""
    if not _state.tracing:
        return []
    from opentelemetry.instrumentation import grpc as grpc_instrumentation

    return [grpc_instrumentation.aio_server_interceptor(_LIBRARIES, filter_=_TRACED)]


def aio_client_interceptors() -> list[Any]:
    """CLIENT spans for an asyncio channel; the trace context travels in the call's metadata."""
    if not _state.tracing:
        return []
    from opentelemetry.instrumentation import grpc as grpc_instrumentation

    return list(grpc_instrumentation.aio_client_interceptors(_LIBRARIES, filter_=_TRACED))


def traced_channel(channel: grpc.Channel) -> grpc.Channel:
    """A blocking channel (job threads, the CLI) with CLIENT spans."""
    if not _state.tracing:
        return channel
    from opentelemetry.instrumentation import grpc as grpc_instrumentation
    from opentelemetry.instrumentation.grpc import grpcext

    interceptor = grpc_instrumentation.client_interceptor(_LIBRARIES, filter_=_TRACED)
    return grpcext.intercept_channel(channel, interceptor)  # type: ignore[no-any-return]
