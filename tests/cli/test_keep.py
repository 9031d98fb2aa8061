"""`sfvault prune` and `sfvault hold set|release|list` (issue 18, keep) on fake services: the PRUNE session asked
for (dry_run), its report from the prune job's counts (--json: one object), holds set on the policy's org with the
policy marked, released (both cleared), listed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.session.v1 import session_pb2 as api
from sfvault.storage.v1 import storage_pb2 as st

from services.cli import __main__ as cli

SF_ORG = "00D000000000001AAA"


class FakeServices:
    def __init__(self) -> None:
        self.policy = disc.Policy(policy_id="p1", org_id="prod", name="nightly")
        self.updated: list[disc.Policy] = []
        self.started: list[api.StartSessionRequest] = []
        self.holds: list[st.LegalHold] = []
        self.discovery, self.session, self.storage = self, self, self

    # discovery
    def GetPolicy(self, request: disc.GetPolicyRequest) -> disc.Policy:
        return self.policy

    def UpdatePolicy(self, request: disc.UpdatePolicyRequest) -> disc.Policy:
        self.updated.append(request.policy)
        self.policy = request.policy
        return request.policy

    def GetOrg(self, request: disc.GetOrgRequest) -> disc.Org:
        return disc.Org(org_id=request.org_id, salesforce_org_id=SF_ORG)

    # session
    def StartSession(self, request: api.StartSessionRequest) -> api.Session:
        self.started.append(request)
        return api.Session(session_id="p9", status=pb.SESSION_STATUS_PENDING, kind=request.kind)

    def ListJobs(self, request: api.ListJobsRequest) -> api.ListJobsResponse:
        return api.ListJobsResponse(jobs=[api.Job(job_id="prune", message="pruned 25 record versions")])

    # storage
    def SetLegalHold(self, request: st.SetLegalHoldRequest) -> st.LegalHold:
        hold = st.LegalHold(
            hold_id=str(len(self.holds) + 1),
            org_id=request.org_id,
            object_name=request.object_name,
            reason=request.reason,
            policy_id=request.policy_id,
            set_by="admin-1",
        )
        hold.set_at.FromJsonString("2026-12-07T01:00:00Z")
        self.holds.append(hold)
        return hold

    def ReleaseLegalHold(self, request: st.ReleaseLegalHoldRequest) -> st.LegalHold:
        [hold] = [h for h in self.holds if h.hold_id == request.hold_id]
        hold.released_by = "admin-1"
        hold.released_at.FromJsonString("2026-12-07T02:00:00Z")
        return hold

    def ListLegalHolds(self, request: st.ListLegalHoldsRequest) -> st.ListLegalHoldsResponse:
        return st.ListLegalHoldsResponse(
            holds=[
                h
                for h in self.holds
                if h.org_id == request.org_id and (request.include_released or not h.HasField("released_at"))
            ]
        )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServices]:
    services = FakeServices()
    monkeypatch.setattr(cli, "clients", lambda: services)
    final = api.Session(
        session_id="p9",
        kind=rpb.SESSION_KIND_PRUNE,
        status=pb.SESSION_STATUS_SUCCESS,
        totals=pb.Counts(received=30, deleted=25, metadata_components=2, files=4, bytes=4096),
    )
    monkeypatch.setattr(cli, "watch", lambda c, sid: final)
    yield services


def test_prune_starts_a_prune_session_and_reports_the_job(
    fake: FakeServices, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run(["prune", "prod"]) == 0
    assert "prune session p9 started" in capsys.readouterr().out
    [request] = fake.started
    assert request.kind == rpb.SESSION_KIND_PRUNE and request.org_id == "prod" and not request.dry_run
    assert cli.run(["prune", "prod", "--dry-run", "--json"]) == 0  # a dry run always waits
    shown = json.loads(capsys.readouterr().out)
    assert fake.started[-1].dry_run
    assert shown == {
        "session_id": "p9",
        "status": "SUCCESS",
        "reason": "",
        "dry_run": True,
        "record_versions": 25,
        "metadata_versions": 2,
        "file_versions": 3,
        "file_bodies": 4,
        "bytes_freed": 4096,
        "message": "pruned 25 record versions",
        "warnings": [],
    }


def test_hold_set_release_list_through_a_policy(fake: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["hold", "set", "--policy", "p1"]) == 2  # a reason is required
    capsys.readouterr()
    assert cli.run(["hold", "set", "--policy", "p1", "--reason", "matter 42", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["org_id"], shown["object"], shown["policy_id"], shown["set_by"]) == (SF_ORG, "*", "p1", "admin-1")
    assert fake.policy.legal_hold and len(fake.updated) == 1
    assert cli.run(["hold", "set", "prod", "--object", "Contact", "--reason", "one object"]) == 0
    assert cli.run(["hold", "list", "prod", "--json"]) == 0
    capsys.readouterr()
    assert cli.run(["hold", "list", "prod", "--json"]) == 0
    assert [h["object"] for h in json.loads(capsys.readouterr().out)] == ["*", "Contact"]
    assert cli.run(["hold", "set", "other", "--policy", "p1", "--reason", "x"]) == 2  # not the policy's org
    capsys.readouterr()

    assert cli.run(["hold", "release", "--policy", "p1", "--json"]) == 0
    released = json.loads(capsys.readouterr().out)
    assert [h["object"] for h in released] == ["*"] and released[0]["released_by"] == "admin-1"
    assert not fake.policy.legal_hold and len(fake.updated) == 2
    assert cli.run(["hold", "list", "prod"]) == 0
    out = capsys.readouterr().out
    assert "Contact" in out and "active" in out and "matter 42" not in out
    assert cli.run(["hold", "release", "prod", "--object", "Account"]) == 2
    assert "no active legal hold" in capsys.readouterr().err
