"""How the CLI shows things: rich tables for people, JSON for scripts (`--json`)."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from sfvault.events.v1 import events_pb2 as pb
from sfvault.restore.v1 import restore_pb2 as rpb
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


INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def as_dict(message: Message) -> dict[str, Any]:
    """A message as JSON for scripts: proto field names, 64-bit integers as JSON numbers (not the strings of
    protobuf's JSON mapping), `*_json` bytes as the JSON they hold (not base64), times ISO 8601 (RFC 3339)."""
    return _plain(message.DESCRIPTOR, MessageToDict(message, preserving_proto_field_name=True))


def _plain(descriptor: Any, data: dict[str, Any]) -> dict[str, Any]:
    for name, value in data.items():
        field = descriptor.fields_by_name.get(name)
        if field is not None:
            data[name] = _plain_value(field, value)
    return data


def _plain_value(field: Any, value: Any) -> Any:
    kind = field.message_type
    if kind is not None and kind.GetOptions().map_entry:
        inner = kind.fields_by_name["value"]
        return {k: _plain_value(inner, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_one_value(field, v) for v in value]
    return _one_value(field, value)


def _one_value(field: Any, value: Any) -> Any:
    if field.type in INT64_TYPES:
        return int(value)
    if field.type == FieldDescriptor.TYPE_BYTES and field.name.endswith("_json"):
        return json.loads(base64.b64decode(value) or b"null")
    kind = field.message_type
    if kind is not None and not kind.full_name.startswith("google.protobuf.") and isinstance(value, dict):
        return _plain(kind, value)
    return value


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


def new_table(title: str) -> Table:
    """A table as every command shows one: a rule under the header, no frame (narrow enough for 80 columns)."""
    return Table(
        title=title, box=box.SIMPLE_HEAD, title_justify="left", show_edge=False, pad_edge=False, collapse_padding=True
    )


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Rows under their column names, for people."""
    table = new_table(title)
    for col in columns:
        table.add_column(col, overflow="fold")  # folded, never cut
    for row in rows:
        table.add_row(*row)
    console.print(table)


def print_fields(title: str, pairs: Iterable[tuple[str, str]]) -> None:
    """A short report: a name and a value a line, under a title."""
    table = Table(title=title, box=None, show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in pairs:
        table.add_row(name, value)
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


def kind_name(kind: Any) -> str:
    names = {rpb.SESSION_KIND_RESTORE: "restore", rpb.SESSION_KIND_METADATA_RESTORE: "metadata restore"}
    return (names | {rpb.SESSION_KIND_PRUNE: "prune"}).get(kind, "backup")


def is_restore(session: api.Session) -> bool:
    return session.kind in (rpb.SESSION_KIND_RESTORE, rpb.SESSION_KIND_METADATA_RESTORE)


def record_state_name(state: Any) -> str:
    return rpb.RecordState.Name(state).removeprefix("RECORD_STATE_").lower() if state else "-"


def ts(value: Any) -> str:
    if value is None or not value.seconds:
        return "-"
    return value.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")


def sessions_table(sessions: Iterable[api.Session]) -> Table:
    """Backups and restores alike, in 80 columns (a session by the first 12 characters of its id: any unique
    start of it is taken where an id is). A restore's "points" counts the records it wrote (created, updated,
    undeleted); a backup's the restore points it created (new, changed, deleted)."""
    table = new_table("Sessions")
    table.add_column("session", no_wrap=True)
    table.add_column("kind")
    table.add_column("policy / org", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("requested (UTC)", no_wrap=True)
    table.add_column("jobs", justify="right", no_wrap=True)
    table.add_column("points", justify="right", no_wrap=True)
    for s in sessions:
        status = status_name(s.status)
        if is_restore(s):
            written = sum(c.created + c.updated + c.undeleted for c in s.restore_counts)
            target = s.restore.target_org_id or s.org_id
            where = s.org_id if target == s.org_id else f"{s.org_id} -> {target}"
        else:
            written, where = s.totals.new_versions + s.totals.changed + s.totals.deleted, s.policy_id or s.org_id
        table.add_row(
            s.session_id[:12],
            kind_name(s.kind) + (" (dry run)" if s.restore.dry_run else ""),
            where,
            f"[{STATUS_STYLE.get(status, '')}]{status}[/]",
            ts(s.requested_at)[:16],
            f"{s.jobs_finished}/{s.jobs_total}",
            f"{written:,}",
        )
    return table


RESTORE_COLUMNS = ("created", "updated", "undeleted", "skipped", "failed")


def restore_counts_table(session: api.Session) -> Group:
    """Per object: what the restore did (or, in a dry run, would do); below, in all: fields left out, files and
    write calls (per object in --json)."""
    table = new_table("Would be restored (dry run)" if session.restore.dry_run else "Restored")
    table.add_column("object", overflow="fold")
    for col in RESTORE_COLUMNS:
        table.add_column(col, justify="right", no_wrap=True)
    counts = list(session.restore_counts)
    for c in counts:
        table.add_row(
            c.object_name,
            f"{c.created:,}",
            f"{c.updated:,}",
            f"{c.undeleted:,}",
            f"{c.skipped:,}",
            f"[red]{c.failed:,}[/]" if c.failed else "0",
        )
    left_out, files, writes = (sum(getattr(c, f) for c in counts) for f in ("fields_left_out", "files", "write_calls"))
    return Group(table, Text(f"fields left out {left_out:,}; files {files:,}; write calls {writes:,}"))


def restore_report(session: api.Session) -> None:
    """A restore: what was asked, what it did per object, and the read-back that proves it."""
    spec = session.restore
    status = status_name(session.status)
    console.rule(f"{kind_name(session.kind).capitalize()} {session.session_id}")
    target = spec.target_org_id or session.org_id
    lines = [
        f"status [{STATUS_STYLE.get(status, '')}]{status}[/]" + (f" — {session.reason}" if session.reason else ""),
        f"from org {spec.source_org_id or session.org_id} into org {target}, as of "
        + (ts(spec.as_of) if spec.HasField("as_of") else "the latest backup")
        + (", dry run: nothing written" if spec.dry_run else "")
        + (", check only: nothing deployed" if spec.check_only else "")
        + (f", retry of {spec.retry_of}" if spec.retry_of else ""),
        f"requested by {spec.requested_by or '-'} at {ts(session.requested_at)}, finished {ts(session.finished_at)}",
    ]
    console.print("\n".join(lines))
    for warning in session.warnings:
        console.print(f"[yellow]warning[/]: {warning}")
    console.print(restore_counts_table(session))
    v = session.verification
    if v.done:
        style = "green" if v.verified else "red"
        console.print(f"read-back: [{style}]{v.matching:,} matching, {v.differing:,} differing[/]")
        for sample in v.samples:
            console.print(f"  {sample}", highlight=False, markup=False)
    elif not spec.dry_run:
        console.print("read-back: [yellow]not run[/]")


JOB_STATE_STYLE = {"planned": "dim", "running": "cyan", "terminated": "red", "dropped": "magenta"}
OUTCOME_STYLE = {"SUCCESS": "green", "WARNING": "yellow", "ERROR": "red", "CANCELLED": "magenta"}


def job_state(j: api.Job) -> str:
    """A job's state, or its outcome once finished, coloured (the colours reach a terminal only)."""
    state = api.JobState.Name(j.state).removeprefix("JOB_STATE_").lower()
    if state == "finished" and j.outcome:
        outcome = outcome_name(j.outcome)
        return f"[{OUTCOME_STYLE.get(outcome, '')}]{outcome.lower()}[/]"
    return f"[{JOB_STATE_STYLE.get(state, '')}]{state}[/]"


def jobs_table(jobs: Iterable[api.Job]) -> Group:
    """A row per job, in 80 columns: the object (or the job's kind), its state, what it read and stored
    ("points": restore points created, new + changed + deleted); the jobs' messages below the table."""
    table = new_table("Jobs")
    table.add_column("job", overflow="fold")
    table.add_column("state", no_wrap=True)
    for col in ("records", "points", "unchanged", "files", "API"):
        table.add_column(col, justify="right", no_wrap=True)
    notes: dict[str, list[str]] = {}  # a message and the jobs that said it
    for j in jobs:
        c = j.counts
        name = j.object_name or job_type_name(j.type)
        table.add_row(
            name,
            job_state(j),
            f"{c.received:,}",
            f"{c.new_versions + c.changed + c.deleted:,}",
            f"{c.unchanged:,}",
            f"{c.files:,}",
            f"{c.api_calls:,}",
        )
        if j.message:
            notes.setdefault(j.message[:500], []).append(name)
    return Group(table, *(Text.assemble((", ".join(names), "bold"), f": {note}") for note, names in notes.items()))


def session_report(session: api.Session, jobs: list[api.Job]) -> None:
    if is_restore(session):
        restore_report(session)
        console.print(jobs_table(jobs))
        return
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
    for finding in session.findings:
        draft = f" — restore draft {finding.draft_session_id}" if finding.draft_session_id else ""
        console.print(f"[red]{finding.kind}[/]: {finding.message}{draft}", highlight=False)
    console.print(jobs_table(jobs))
