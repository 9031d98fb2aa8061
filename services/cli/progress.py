"""Live progress of a session (`backup run --wait`, `session watch`, restores with --wait): a bar per job.

On a terminal (standard error, so `--json` output stays clean): the session's line, then per job a bar with its
records so far, %, records/s and ETA. The % and ETA need the records a job is expected to read: discovery's
plan gives them (PlannedObject.expected_records, the org's COUNT() at planning) for an object read in full;
without it (an incremental read, or a discovery that does not report counts) the bar shows records and
records/s only. Off a terminal: plain lines, one when a job changes state or passes a quarter of its expected
records, never a redrawn bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import grpc
from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.session.v1 import session_pb2 as api

from services.cli import render
from services.cli.errors import CodedError

QUARTERS = 4
RUNNING = (api.JOB_STATE_UNSPECIFIED, api.JOB_STATE_PLANNED, api.JOB_STATE_RUNNING)


class RateColumn(ProgressColumn):
    """Records per second (rich's estimate over the last samples), e.g. 1,234/s."""

    def render(self, task: Task) -> Text:
        speed = None if task.fields.get("session") else task.finished_speed or task.speed  # the session: jobs
        return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")


def expected_records(c: Any, session_id: str) -> dict[str, int]:
    """Per job id, the records discovery expects it to read (its plan's objects read in full); {} when the plan
    has none (or this discovery does not answer it)."""
    try:
        plan = c.discovery.GetSessionPlan(disc.GetSessionPlanRequest(session_id=session_id))
    except grpc.RpcError:
        return {}
    return {o.job_id: int(getattr(o, "expected_records", 0)) for o in plan.objects if o.job_id and o.full}


def job_name(j: api.Job) -> str:
    return j.object_name or render.job_type_name(j.type)


def job_state(j: api.Job) -> str:
    state = api.JobState.Name(j.state).removeprefix("JOB_STATE_").lower()
    return render.outcome_name(j.outcome).lower() if state == "finished" and j.outcome else state


def session_counts(s: api.Session, jobs: list[api.Job]) -> tuple[int, int, str]:
    """(jobs finished, jobs in all, what the session did so far) -- jobs counted from the list while the
    session's own count lags its plan."""
    finished = sum(1 for j in jobs if j.state not in RUNNING)
    done, total = max(s.jobs_finished, finished), max(s.jobs_total, len(jobs))
    if render.is_restore(s):
        written = sum(c.created + c.updated + c.undeleted for c in s.restore_counts)
        return done, total, f"{done}/{total} jobs, {written:,} records written"
    received = max(s.totals.received, sum(j.counts.received for j in jobs))
    return done, total, f"{done}/{total} jobs, {received:,} records"


class Bars:
    """Follows a session's updates: `update(session, jobs)` after each. A context manager (the live display)."""

    def __init__(
        self,
        console: Console,
        expected: Callable[[], dict[str, int]],
        get_time: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.live = console.is_terminal
        self._expected_of = expected
        self.expected: dict[str, int] | None = None
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=10),
            TaskProgressColumn(),
            TextColumn("{task.fields[records]}"),
            RateColumn(),
            TimeRemainingColumn(compact=True, elapsed_when_finished=True),
            console=console,
            transient=True,
            get_time=get_time,
            auto_refresh=self.live,
        )
        self.tasks: dict[str, TaskID] = {}
        self.said: dict[str, tuple[str, int]] = {}  # plain lines: a job's last state and quarter said

    def __enter__(self) -> Bars:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.live:
            self.progress.stop()

    def update(self, s: api.Session, jobs: list[api.Job]) -> None:
        if jobs and self.expected is None:  # the plan exists once jobs do
            self.expected = self._expected_of()
        for j in jobs:
            if self.live:
                self._bar(j)
            else:
                self._line(j)
        if self.live:
            done, total, counts = session_counts(s, jobs)
            title = f"session {s.session_id[:12]} {render.status_name(s.status)}"
            self.progress.update(
                self._header_task(), description=title, total=max(total, 1), completed=done, records=counts
            )

    def _header_task(self) -> TaskID:
        """The session's row: its status and counts, its bar the jobs finished."""
        if "" not in self.tasks:
            self.tasks[""] = self.progress.add_task("session", total=1, records="", session=True)
        return self.tasks[""]

    def _total(self, j: api.Job) -> int | None:
        return (self.expected or {}).get(j.job_id) or None

    def _bar(self, j: api.Job) -> None:
        self._header_task()
        received = j.counts.received
        if j.job_id not in self.tasks:
            self.tasks[j.job_id] = self.progress.add_task(f"  {job_name(j)}", total=self._total(j), records="")
        task = self.tasks[j.job_id]
        if j.state in RUNNING:
            self.progress.update(task, completed=received, total=self._total(j), records=f"{received:,}")
            return
        whole = max(received, 1)  # a finished job's bar is full, whatever it read (an incremental: often 0)
        self.progress.update(task, completed=whole, total=whole, records=f"{received:,} {job_state(j)}")
        self.progress.stop_task(task)

    def _line(self, j: api.Job) -> None:
        state, received, total = job_state(j), j.counts.received, self._total(j)
        quarter = min(QUARTERS, received * QUARTERS // total) if total else 0
        if self.said.get(j.job_id) == (state, quarter) or (
            state in ("planned", "unspecified") and j.job_id not in self.said
        ):
            return
        self.said[j.job_id] = (state, quarter)
        share = f" of {total:,} ({min(100, received * 100 // total)}%)" if total else ""
        self.console.print(f"{job_name(j)}: {state}, {received:,} records{share}", highlight=False, markup=False)

    def renderable(self) -> Group:
        """What the terminal shows now."""
        return Group(self.progress.get_renderable())


def follow(c: Any, session_id: str, console: Console) -> api.Session:
    """Follow a session to its end, showing its jobs; its last state."""
    last: api.Session | None = None
    with Bars(console, lambda: expected_records(c, session_id)) as bars:
        for update in c.session.WatchSession(api.WatchSessionRequest(session_id=session_id)):
            last = update
            bars.update(update, list(c.session.ListJobs(api.ListJobsRequest(session_id=session_id)).jobs))
    if last is None:
        raise CodedError(f"session {session_id} sent no update", "unavailable")
    return last
