"""The local stack's trace file: every service appends its finished spans to one JSON Lines file
(SFVAULT_TRACE_FILE), so `sfvault session trace ID` shows where a session's time went without Jaeger.

A line is one span: ids in hex, times in nanoseconds since the epoch, the service, and the span's attributes as
telemetry made them (ids, names, counts and status codes: never a secret or a record value). Each export is one
write(2) on a file opened O_APPEND, so the services' lines never interleave.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the SDK is imported by the services that export, not by the CLI that reads
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter

VARIABLE = "SFVAULT_TRACE_FILE"


@dataclass(frozen=True)
class FileSpan:
    trace_id: str
    span_id: str
    parent_id: str  # "" for a trace's root
    name: str
    service: str
    kind: str  # SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL
    start_ns: int
    end_ns: int
    error: bool = False
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max(self.end_ns - self.start_ns, 0) / 1e9


def _line(span: ReadableSpan) -> dict[str, Any]:
    context, parent = span.get_span_context(), span.parent
    return {
        "trace_id": f"{context.trace_id:032x}" if context else "",
        "span_id": f"{context.span_id:016x}" if context else "",
        "parent_id": f"{parent.span_id:016x}" if parent else "",
        "name": span.name,
        "service": str(span.resource.attributes.get("service.name", "")),
        "kind": span.kind.name,
        "start_ns": span.start_time or 0,
        "end_ns": span.end_time or 0,
        "error": span.status.status_code.name == "ERROR",
        "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()},
    }


def append(path: Path, spans: Sequence[ReadableSpan]) -> bool:
    """Append the spans' lines to `path` (made 0600) in one write; False when it cannot be written."""
    data = "".join(json.dumps(_line(s), separators=(",", ":")) + "\n" for s in spans).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


def exporter(path: str | os.PathLike[str]) -> SpanExporter:
    """An OpenTelemetry SpanExporter (for a BatchSpanProcessor) that appends JSON lines to `path`."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class FileSpanExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS if append(Path(path), spans) else SpanExportResult.FAILURE

    return FileSpanExporter()


def read(path: str | os.PathLike[str]) -> Iterator[FileSpan]:
    """The spans of a trace file, in the order written; a line cut short (a service killed mid-write) is skipped."""
    with open(path, encoding="utf-8") as f:
        for text in f:
            try:
                found = json.loads(text)
                yield FileSpan(**found)
            except (ValueError, TypeError):
                continue
