"""`sfvault session trace ID`: where a session's time went, as a tree in the terminal, read from the local
stack's trace file (services.platform.tracefile) — no Jaeger needed.

The raw trace of a backup has thousands of spans (every SQL statement, every Salesforce call), so the tree is
condensed: SQL statements are counted, a publish is replaced by the consumers it reached (the hop across NATS),
a gRPC call by both its sides (`jobrunner→storage PutRecords`), and more than `limit` siblings of one kind by
one line (how many, their total and longest time, the records they carried). Each line says when the span
started (from the trace's start), how long it took, its service, and what it worked on: the job and object
(once, where they start), the chunk and its records.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer

from services.cli.client import default_home
from services.cli.errors import CodedError
from services.platform import tracefile
from services.platform.tracefile import FileSpan

FILE_NAME = "traces.jsonl"  # in the local stack's home (SFVAULT_HOME)
SESSION_ID = "sfvault.session_id"
SHOWN = {  # attribute -> how a line names it
    "sfvault.job_id": "job",
    "sfvault.object": "object",
    "sfvault.chunk.seq": "chunk",
    "sfvault.chunk.records": "records",
    "sfvault.salesforce.rows": "rows",
    "error.type": "error",
}
STATEMENT = "SQL"  # the label of a statement's span: they are always condensed
COUNTED = ("sfvault.chunk.records", "sfvault.salesforce.rows")  # summed over a condensed group


def trace_file(home: Path) -> Path:
    """SFVAULT_TRACE_FILE when set (what the services were given), else the home's traces.jsonl."""
    return Path(os.environ.get(tracefile.VARIABLE) or home / FILE_NAME)


@dataclass
class Node:
    span: FileSpan
    children: list[Node] = field(default_factory=list)
    label: str = ""  # the span's name unless condensing renamed it
    services: str = ""  # "jobrunner→storage" for a gRPC call; the span's service otherwise
    count: int = 1  # > 1: a condensed group of siblings
    total_s: float = 0.0
    max_s: float = 0.0
    counted: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label = self.label or self.span.name
        self.services = self.services or self.span.service
        self.total_s = self.max_s = self.span.duration_s


# ---- finding the session's spans -------------------------------------------------------------------------------


def session_spans(spans: Iterable[FileSpan], text: str) -> tuple[str, list[FileSpan]]:
    """The session a unique start of its id names, and every span of its trace(s)."""
    every = list(spans)
    ids = {str(s.attributes.get(SESSION_ID)) for s in every if str(s.attributes.get(SESSION_ID, "")).startswith(text)}
    if not text or not ids:
        raise CodedError(f"no traced session id starts with {text!r}", "not_found")
    if len(ids) > 1:
        raise CodedError(f"{text!r} is the start of several sessions: {', '.join(sorted(ids))}", "invalid_argument")
    [session_id] = ids
    traces = {s.trace_id for s in every if s.attributes.get(SESSION_ID) == session_id}
    return session_id, [s for s in every if s.trace_id in traces]


# ---- the tree ------------------------------------------------------------------------------------------------


def build(spans: Sequence[FileSpan]) -> list[Node]:
    """The spans as trees (a span whose parent is not in the file, e.g. the CLI's own call, is a root)."""
    nodes = {s.span_id: Node(s) for s in spans}
    roots: list[Node] = []
    for node in nodes.values():
        parent = nodes.get(node.span.parent_id)
        (parent.children if parent is not None else roots).append(node)
    for node in nodes.values():
        node.children.sort(key=lambda n: n.span.start_ns)
    return sorted(roots, key=lambda n: n.span.start_ns)


def _short(name: str) -> str:
    """A gRPC method by its name alone: /sfvault.storage.v1.StorageService/PutRecords -> PutRecords."""
    return name.rsplit("/", 1)[-1] if name.startswith("/") else name


def _hops(node: Node) -> list[Node]:
    """`node` with publishes replaced by their consumers and gRPC client calls merged with their server side."""
    span = node.span
    if span.kind == "PRODUCER" and node.children:
        return [hop for child in node.children for hop in _hops(child)]
    if span.kind == "CLIENT" and len(node.children) == 1 and node.children[0].span.kind == "SERVER":
        server = node.children[0]
        merged = Node(span, server.children, label=_short(span.name), services=f"{span.service}→{server.span.service}")
        node = merged
    node.label = STATEMENT if _statement(node.span) else _short(node.label)
    node.children = sorted((hop for child in node.children for hop in _hops(child)), key=lambda n: n.span.start_ns)
    return [node]


def _statement(span: FileSpan) -> bool:
    """A SQL statement's span (psycopg's), not the chunk's transaction ("sql put_records")."""
    return "db.system" in span.attributes and span.kind == "CLIENT" and not span.name.startswith("sql ")


def _key(node: Node) -> tuple[str, ...]:
    """Siblings of one kind: a job is its own kind (its id), a chunk or a call is not."""
    job = str(node.span.attributes.get("sfvault.job_id", "")) if node.label == "process JobSpec" else ""
    return (node.services, node.label, job)


def _counts(node: Node) -> dict[str, int]:
    found: dict[str, int] = defaultdict(int)
    for name in COUNTED:
        value = node.span.attributes.get(name)
        if isinstance(value, int):
            found[name] += value
    for child in node.children:
        for name, value in _counts(child).items():
            found[name] += value
    return dict(found)


def condense(nodes: list[Node], limit: int) -> list[Node]:
    """More than `limit` siblings of one kind become one line (limit 0: none are condensed)."""
    groups: dict[tuple[str, ...], list[Node]] = defaultdict(list)
    for node in nodes:
        groups[_key(node)].append(node)
    result: list[Node] = []
    for members in groups.values():
        if (limit and len(members) > limit) or (members[0].label == STATEMENT and len(members) > 1):
            first = members[0]
            group = Node(first.span, [], label=first.label, services=first.services, count=len(members))
            group.total_s = sum(m.span.duration_s for m in members)
            group.max_s = max(m.span.duration_s for m in members)
            counted: dict[str, int] = defaultdict(int)
            for m in members:
                for name, value in _counts(m).items():
                    counted[name] += value
            group.counted = dict(counted)
            result.append(group)
        else:
            for m in members:
                m.children = condense(m.children, limit)
            result.extend(members)
    return sorted(result, key=lambda n: n.span.start_ns)


def seconds(value: float) -> str:
    if value < 0.001:
        return f"{value * 1e6:.0f}µs"
    if value < 1:
        return f"{value * 1e3:.0f}ms"
    return f"{value:.2f}s"


INHERITED = ("sfvault.job_id", "sfvault.object")  # said once, by the highest span that carries them


def line(node: Node, origin_ns: int, said: dict[str, Any]) -> str:
    """One node's text (rich markup); `said`: the job and object its ancestors' lines named."""
    from rich.markup import escape

    offset = seconds(max(node.span.start_ns - origin_ns, 0) / 1e9)
    span_error = node.span.error and node.count == 1
    if node.count > 1:
        timing = f"[bold]{node.count} x[/] total {seconds(node.total_s)}, longest {seconds(node.max_s)}"
        shown = {SHOWN[k]: v for k, v in node.counted.items() if v}
    else:
        timing = f"[bold]{seconds(node.total_s)}[/]"
        attributes = node.span.attributes
        new = {k: v for k, v in attributes.items() if k not in INHERITED or said.get(k) != v}
        shown = {label: new[k] for k, label in SHOWN.items() if k in new}
    details = " ".join(f"{k}={escape(str(v))}" for k, v in shown.items())
    name = f"[red]{escape(node.label)}[/]" if span_error else escape(node.label)
    return f"[dim]+{offset}[/] {timing} [cyan]{escape(node.services)}[/] {name}" + (
        f" [dim]{details}[/]" if details else ""
    )


def tree(session_id: str, spans: Sequence[FileSpan], limit: int, depth: int = 0) -> Any:
    """A rich Tree of the session's trace(s), `depth` levels deep (0: all; 3: the jobs and no further)."""
    from rich.tree import Tree

    origin = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    traces = sorted({s.trace_id for s in spans})
    head = Tree(
        f"session [bold]{session_id}[/]: {seconds((end - origin) / 1e9)}, {len(spans)} spans, trace {', '.join(traces)}"
    )

    def add(parent: Any, nodes: list[Node], said: dict[str, Any], level: int) -> None:
        for node in nodes if not depth or level <= depth else ():
            own = {k: node.span.attributes[k] for k in INHERITED if k in node.span.attributes and node.count == 1}
            add(parent.add(line(node, origin, said)), node.children, said | own, level + 1)

    roots = [hop for root in build(spans) for hop in _hops(root)]
    add(head, condense(sorted(roots, key=lambda n: n.span.start_ns), limit), {}, 1)
    return head


def register(cli: ModuleType) -> None:
    """Adds `session trace` to the CLI's `session` group (`cli`: the CLI's main module)."""

    @cli.group["session"].command("trace")
    def session_trace(
        session_id: Annotated[str, typer.Argument(metavar="ID", help="a session id, or a unique start of one")],
        limit: Annotated[
            int, typer.Option(min=0, help="more siblings of one kind than this are one line (0: show every span)")
        ] = 5,
        depth: Annotated[int, typer.Option(min=0, help="levels shown (0: all; 3: down to the jobs)")] = 0,
        file: Annotated[Path | None, typer.Option(help="the trace file (default: the local stack's)")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the trace's spans as JSON.")] = False,
    ) -> None:
        """A session's trace as a tree: services, jobs, chunks and their timings (from the local stack's trace
        file; `sfvault services up` writes it)."""
        path = file or trace_file(default_home())
        if not path.exists():
            raise CodedError(f"no trace file at {path} (the local stack writes it: `sfvault services up`)", "not_found")
        found, spans = session_spans(tracefile.read(path), session_id)
        if json_out:
            cli.render.print_json([s.__dict__ | {"attributes": dict(s.attributes)} for s in spans])
            return
        cli.render.console.print(tree(found, spans, limit, depth), highlight=False)
