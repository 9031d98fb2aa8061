"""How the CLI shows things: rich tables for people, JSON for scripts (`--json`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api

# a pipe or a log file gets wide lines rather than tables folded into 80 columns
console = Console(width=None if sys.stdout.isatty() else 180)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 180)

STATUS_STYLE = {
    "SUCCESS": "bold green",
    "WARNING": "bold yellow",
    "FAILED": "bold red",
    "STOPPED": "bold magenta",
    "RUNNING": "cyan",
    "PENDING": "dim",
}


def as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def print_json(data: Any) -> None:
    if isinstance(data, Message):
        data = as_dict(data)
    elif isinstance(data, list):
        data = [as_dict(m) if isinstance(m, Message) else m for m in data]
    console.print_json(json.dumps(data, default=str))


T = TypeVar("T")


def print_result(data: Any, json_out: bool, shown: Any) -> None:
    """A result: as JSON for scripts (`--json`), else what people read (a line, a table)."""
    if json_out:
        print_json(data)
    else:
        console.print(shown)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Rows under their column names, for people."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def print_listing(
    items: Sequence[T], json_out: bool, title: str, columns: Sequence[str], row: Callable[[T], Sequence[str]]
) -> None:
    """A list: as JSON for scripts (`--json`), else a table of a row per item."""
    if json_out:
        print_json(list(items))
    else:
        print_table(title, columns, [row(item) for item in items])


def status_name(status: Any) -> str:
    return pb.SessionStatus.Name(status).removeprefix("SESSION_STATUS_")


def outcome_name(outcome: Any) -> str:
    return pb.JobOutcome.Name(outcome).removeprefix("JOB_OUTCOME_") if outcome else "-"


def job_type_name(kind: Any) -> str:
    return pb.JobType.Name(kind).removeprefix("JOB_TYPE_").lower()


def ts(value: Any) -> str:
    if value is None or not value.seconds:
        return "-"
    return value.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")


def sessions_table(sessions: Iterable[api.Session]) -> Table:
    table = Table(title="Sessions")
    for col in ("session", "policy", "status", "requested", "finished", "jobs", "restore points", "unchanged"):
        table.add_column(col)
    for s in sessions:
        status = status_name(s.status)
        table.add_row(
            s.session_id,
            s.policy_id,
            f"[{STATUS_STYLE.get(status, '')}]{status}[/]",
            ts(s.requested_at),
            ts(s.finished_at),
            f"{s.jobs_finished}/{s.jobs_total}",
            f"{s.totals.new_versions + s.totals.changed + s.totals.deleted:,}",
            f"{s.totals.unchanged:,}",
        )
    return table


def jobs_table(jobs: Iterable[api.Job]) -> Table:
    table = Table(title="Jobs")
    for col in (
        "job",
        "type",
        "object",
        "state",
        "outcome",
        "received",
        "new",
        "changed",
        "unchanged",
        "deleted",
        "files",
        "API calls",
        "message",
    ):
        table.add_column(col, overflow="fold")
    for j in jobs:
        c = j.counts
        table.add_row(
            j.job_id,
            job_type_name(j.type),
            j.object_name or "-",
            api.JobState.Name(j.state).removeprefix("JOB_STATE_").lower(),
            outcome_name(j.outcome),
            f"{c.received:,}",
            f"{c.new_versions:,}",
            f"{c.changed:,}",
            f"{c.unchanged:,}",
            f"{c.deleted:,}",
            f"{c.files:,}",
            f"{c.api_calls:,}",
            j.message[:80],
        )
    return table


def session_report(session: api.Session, jobs: list[api.Job]) -> None:
    status = status_name(session.status)
    t = session.totals
    console.rule(f"Session {session.session_id}")
    console.print(
        f"status [{STATUS_STYLE.get(status, '')}]{status}[/]"
        + (f" — {session.reason}" if session.reason else "")
        + f"\npolicy {session.policy_id}, org {session.org_id}, {'initial' if session.initial else 'incremental'}"
        + f"\nrequested {ts(session.requested_at)}, finished {ts(session.finished_at)}"
        + f"\nrestore points created {t.new_versions + t.changed + t.deleted:,} "
        + f"(new {t.new_versions:,}, changed {t.changed:,}, deleted {t.deleted:,}); "
        + f"unchanged records skipped {t.unchanged:,}; files {t.files:,}; metadata components "
        + f"{t.metadata_components:,}; API calls {t.api_calls:,}"
    )
    for warning in session.warnings:
        console.print(f"[yellow]warning[/]: {warning}")
    console.print(jobs_table(jobs))
