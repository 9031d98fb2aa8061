"""Progress of a session as a person sees it (services/cli/progress.py), on fake services and a fake clock: on
a terminal a bar per job with %, records/s and ETA from the records discovery expects; off a terminal plain
lines on standard error (the JSON on standard output stays whole)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from rich.console import Console
from rich.text import Text
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api

from services.cli import __main__ as cli
from services.cli import progress

SESSION = "b0000000000000000000000000000001"


def job(name: str, received: int, state: int = api.JOB_STATE_RUNNING, outcome: int = 0) -> api.Job:
    return api.Job(
        session_id=SESSION,
        job_id=f"data-{name}",
        object_name=name,
        state=state,  # type: ignore[arg-type]
        outcome=outcome,  # type: ignore[arg-type]
        counts=pb.Counts(received=received),
    )


def session(status: int = pb.SESSION_STATUS_RUNNING, finished: int = 0) -> api.Session:
    return api.Session(
        session_id=SESSION,
        status=status,  # type: ignore[arg-type]
        jobs_total=2,
        jobs_finished=finished,
        policy_id="nightly",
        org_id="prod",
    )


STEPS = [
    (session(), [job("Account", 1_000), job("Contact", 500)]),
    (session(), [job("Account", 3_000), job("Contact", 1_500)]),
    (
        session(pb.SESSION_STATUS_SUCCESS, 2),
        [
            job("Account", 10_000, api.JOB_STATE_FINISHED, pb.JOB_OUTCOME_SUCCESS),
            job("Contact", 2_000, api.JOB_STATE_FINISHED, pb.JOB_OUTCOME_SUCCESS),
        ],
    ),
]
PLAN = disc.SessionPlan(
    session_id=SESSION,
    objects=[
        disc.PlannedObject(object_name="Account", job_id="data-Account", full=True, expected_records=10_000),
        disc.PlannedObject(object_name="Contact", job_id="data-Contact", full=False, expected_records=9_999),
    ],
)


def test_a_bar_per_job_with_percent_rate_and_eta() -> None:
    now = [0.0]
    terminal = Console(file=io.StringIO(), width=120, force_terminal=True)
    bars = progress.Bars(terminal, lambda: {"data-Account": 10_000}, lambda: now[0])  # not entered: no redraws
    for s, jobs in STEPS[:2]:
        bars.update(s, jobs)
        now[0] += 2.0
    shown = Console(file=io.StringIO(), width=120)
    shown.print(bars.renderable())
    lines = Text.from_ansi(shown.file.getvalue()).plain.splitlines()  # type: ignore[attr-defined]
    account = next(line for line in lines if "Account" in line)
    contact = next(line for line in lines if "Contact" in line)
    assert "30%" in account and " 3,000 " in account and "1,000/s" in account
    assert "00:07" in account  # 7,000 left at 1,000 a second
    assert "%" not in contact and "500/s" in contact and " 1,500 " in contact  # no expected count
    bars.update(*STEPS[2])  # finished: full bars, what was read
    shown.print(bars.renderable())
    finished = Text.from_ansi(shown.file.getvalue()).plain.splitlines()[len(lines) :]  # type: ignore[attr-defined]
    contact_done = next(line for line in finished if "Contact" in line)
    assert "100%" in contact_done and "2,000 success" in contact_done
    header = next(line for line in lines if "session b00000000000 RUNNING" in line)
    assert "0/2 jobs, 4,500 records" in header and "/s" not in header  # the jobs' records, no jobs a second


class Fake:
    def __init__(self) -> None:
        self.session, self.discovery = self, self
        self.step = 0

    def WatchSession(self, request: api.WatchSessionRequest) -> Iterator[api.Session]:
        for i, (s, _) in enumerate(STEPS):
            self.step = i
            yield s

    def ListJobs(self, request: api.ListJobsRequest) -> api.ListJobsResponse:
        return api.ListJobsResponse(jobs=STEPS[self.step][1])

    def GetSessionPlan(self, request: disc.GetSessionPlanRequest) -> disc.SessionPlan:
        return PLAN

    def GetPolicy(self, request: disc.GetPolicyRequest) -> disc.Policy:
        return disc.Policy(policy_id="nightly", org_id="prod")

    def StartSession(self, request: api.StartSessionRequest) -> api.Session:
        return session(pb.SESSION_STATUS_PENDING)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Fake:
    services = Fake()
    monkeypatch.setattr(cli, "clients", lambda: services)
    return services


def test_plain_lines_off_a_terminal(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["backup", "run", "--policy", "nightly", "--wait", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["session"]["status"] == "SESSION_STATUS_SUCCESS"  # stdout: the JSON alone
    assert captured.err.splitlines() == [
        "Account: running, 1,000 records of 10,000 (10%)",
        "Contact: running, 500 records",
        "Account: running, 3,000 records of 10,000 (30%)",
        "Account: success, 10,000 records of 10,000 (100%)",
        "Contact: success, 2,000 records",
    ]
    assert "\x1b[" not in captured.err
