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


def kind_name(kind: Any) -> str:
    return {rpb.SESSION_KIND_RESTORE: "restore", rpb.SESSION_KIND_METADATA_RESTORE: "metadata restore"}.get(
        kind, "backup"
    )


def is_restore(session: api.Session) -> bool:
    return session.kind in (rpb.SESSION_KIND_RESTORE, rpb.SESSION_KIND_METADATA_RESTORE)


def record_state_name(state: Any) -> str:
    return rpb.RecordState.Name(state).removeprefix("RECORD_STATE_").lower() if state else "-"


def ts(value: Any) -> str:
    if value is None or not value.seconds:
        return "-"
    return value.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")


def sessions_table(sessions: Iterable[api.Session]) -> Table:
    """Backups and restores alike: a restore's "restore points" column counts the records it wrote (created,
    updated, undeleted), its "unchanged" the ones it skipped."""
    table = Table(title="Sessions")
    for col in (
        "session",
        "kind",
        "policy / org",
        "status",
        "requested",
        "finished",
        "jobs",
        "restore points",
        "unchanged",
    ):
        table.add_column(col)
    for s in sessions:
        status = status_name(s.status)
        if is_restore(s):
            written = sum(c.created + c.updated + c.undeleted for c in s.restore_counts)
            unchanged = sum(c.skipped for c in s.restore_counts)
            target = s.restore.target_org_id or s.org_id
            where = s.org_id if target == s.org_id else f"{s.org_id} -> {target}"
        else:
            written, unchanged, where = (
                s.totals.new_versions + s.totals.changed + s.totals.deleted,
                s.totals.unchanged,
                s.policy_id,
            )
        table.add_row(
            s.session_id,
            kind_name(s.kind) + (" (dry run)" if s.restore.dry_run else ""),
            where,
            f"[{STATUS_STYLE.get(status, '')}]{status}[/]",
            ts(s.requested_at),
            ts(s.finished_at),
            f"{s.jobs_finished}/{s.jobs_total}",
            f"{written:,}",
            f"{unchanged:,}",
        )
    return table


RESTORE_COLUMNS = ("created", "updated", "undeleted", "skipped", "failed", "fields left out", "files", "write calls")


def restore_counts_table(session: api.Session) -> Table:
    """Per object: what the restore did (or, in a dry run, would do)."""
    table = Table(title="Would be restored (dry run)" if session.restore.dry_run else "Restored")
    table.add_column("object")
    for col in RESTORE_COLUMNS:
        table.add_column(col, justify="right")
    for c in session.restore_counts:
        table.add_row(
            c.object_name,
            f"{c.created:,}",
            f"{c.updated:,}",
            f"{c.undeleted:,}",
            f"{c.skipped:,}",
            f"[red]{c.failed:,}[/]" if c.failed else "0",
            f"{c.fields_left_out:,}",
            f"{c.files:,}",
            f"{c.write_calls:,}",
        )
    return table


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
