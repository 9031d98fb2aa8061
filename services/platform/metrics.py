"""sfvault's metrics beside its traces, and where a service's telemetry goes besides OTLP: a Prometheus endpoint
(SFVAULT_METRICS_PORT) and the local stack's trace file (SFVAULT_TRACE_FILE, services.platform.tracefile).

The instruments are telemetry.Instruments'; this module's hooks record bytes stored, jobs by outcome, session
durations and consumer lag on them. Attributes are names and outcomes only.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry import metrics, trace
from sfvault.events.v1 import events_pb2

from services.platform import telemetry, tracefile

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

PORT_VARIABLE = "SFVAULT_METRICS_PORT"
# how a session can end (the session service's final statuses), each counted from 0
SESSION_END_STATUSES = ("SUCCESS", "WARNING", "FAILED", "STOPPED")


# ---- the hooks -------------------------------------------------------------------------------------------------


def bytes_stored(kind: str, size: int) -> None:
    """`kind`: "records" (a PutRecords request's size) or "files" (a file's body)."""
    telemetry.instruments().bytes_stored.add(size, {"sfvault.kind": kind})


def job_finished(job_type: int, outcome: int) -> None:
    """By the enums' names, short: JOB_TYPE_DATA, JOB_OUTCOME_SUCCESS -> data, success."""
    kind = events_pb2.JobType.Name(events_pb2.JobType.ValueType(job_type))
    ended = events_pb2.JobOutcome.Name(events_pb2.JobOutcome.ValueType(outcome))
    attributes = {
        "sfvault.job_type": kind.removeprefix("JOB_TYPE_").lower(),
        "sfvault.job.outcome": ended.removeprefix("JOB_OUTCOME_").lower(),
    }
    telemetry.instruments().jobs_finished.add(1, attributes)


def session_ended(status: str, started_at: dt.datetime | None, finished_at: dt.datetime | None) -> None:
    """A session's end, counted by status, and its duration when it ran (one failed before it started has none)."""
    telemetry.session_finished(status)
    if started_at is not None and finished_at is not None:
        seconds = max((finished_at - started_at).total_seconds(), 0.0)
        telemetry.instruments().session_duration.record(seconds, {"sfvault.session.status": status})


def consumer_lag(consumer: str, pending: int) -> None:
    """What a durable consumer has still to take, as the last message it took said (its num_pending)."""
    telemetry.instruments().consumer_lag.set(pending, {"messaging.consumer.group.name": consumer})


# ---- set-up ------------------------------------------------------------------------------------------------------


def _port(env: Mapping[str, str]) -> int:
    text = env.get(PORT_VARIABLE, "").strip()
    if not text:
        return 0
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SystemExit(f"configuration error: {PORT_VARIABLE}: {text!r} is not a port (1-65535)")
    return int(text)


def _resource(service_name: str, env: Mapping[str, str]) -> Resource:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    return Resource.create({} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name})


def setup(service_name: str, tel: telemetry.Telemetry, environ: Mapping[str, str] | None = None) -> telemetry.Telemetry:
    """After telemetry.setup(): a Prometheus endpoint on SFVAULT_METRICS_PORT (all interfaces, `/metrics`), and
    the spans appended to SFVAULT_TRACE_FILE, each when set. Returns `tel`, with the providers it now has."""
    env = os.environ if environ is None else environ
    port, trace_file = _port(env), env.get(tracefile.VARIABLE, "").strip()
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or not (port or trace_file):
        return tel
    if trace_file:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if tel.tracer_provider is None:
            tel.tracer_provider = TracerProvider(resource=_resource(service_name, env))
            trace.set_tracer_provider(tel.tracer_provider)
        tel.tracer_provider.add_span_processor(BatchSpanProcessor(tracefile.exporter(trace_file)))
    if port:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import start_http_server

        if tel.meter_provider is None:
            tel.meter_provider = MeterProvider(resource=_resource(service_name, env))
            metrics.set_meter_provider(tel.meter_provider)
        tel.meter_provider.add_metric_reader(PrometheusMetricReader())
        start_http_server(port, addr="0.0.0.0")  # scraped from the pod's address
    telemetry.install(tel.tracer_provider, tel.meter_provider)
    if service_name == "session":
        # counters that start at 0 before their first event: increase() and rate() need a sample before it, or
        # a dashboard shows nothing for the first session (or stall termination) after a start
        telemetry.instruments().stall_terminations.add(0)
        for status in SESSION_END_STATUSES:
            telemetry.instruments().session_outcomes.add(0, {"sfvault.session.status": status})
    return tel
