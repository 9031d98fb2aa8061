"""The verbs issue 20 found missing, on fake services: `org update` (only the options given), `org remove` and
`policy delete` (only with --yes off a terminal), `session list` / `ls` filters (server-side: status, since;
in the CLI: org), a session id by a unique prefix everywhere, and `records restore-points`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api
from sfvault.storage.v1 import storage_pb2 as st

from services.cli import __main__ as cli

SF_ORG = "00D000000000001AAA"
IDS = ("3f2a0000000000000000000000000001", "3f2b0000000000000000000000000002", "9c000000000000000000000000000003")


class NotFound(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.NOT_FOUND

    def details(self) -> str:
        return "no such session"


def session(i: int, org: str) -> api.Session:
    return api.Session(session_id=IDS[i], org_id=org, policy_id="p1", status=pb.SESSION_STATUS_SUCCESS)


def version(n: int, session_id: str, values: dict[str, object], deleted: int = 0) -> st.RecordVersion:
    v = st.RecordVersion(version_id=n, session_id=session_id, values_json=json.dumps(values).encode(), deleted=deleted)  # type: ignore[arg-type]
    v.captured_at.FromJsonString(f"2026-12-0{n}T02:00:00Z")
    return v


class Fake:
    def __init__(self) -> None:
        self.discovery, self.session, self.storage = self, self, self
        self.org = disc.Org(
            org_id="prod",
            name="Prod",
            salesforce_org_id=SF_ORG,
            connection=disc.OrgConnection(login_url="https://old", client_id="cid", client_secret_ref="file:/s"),
        )
        self.calls: list[object] = []
        self.sessions = [session(0, "prod"), session(1, "uat"), session(2, "prod")]
        self.list_requests: list[api.ListSessionsRequest] = []

    def GetOrg(self, request: disc.GetOrgRequest) -> disc.Org:
        return self.org

    def UpdateOrg(self, request: disc.UpdateOrgRequest) -> disc.Org:
        self.calls.append(request)
        return self.org

    def DeleteOrg(self, request: disc.DeleteOrgRequest) -> disc.DeleteOrgResponse:
        self.calls.append(request)
        return disc.DeleteOrgResponse()

    def DeletePolicy(self, request: disc.DeletePolicyRequest) -> disc.DeletePolicyResponse:
        self.calls.append(request)
        return disc.DeletePolicyResponse()

    def GetSession(self, request: api.GetSessionRequest) -> api.Session:
        for s in self.sessions:
            if s.session_id == request.session_id:
                return s
        raise NotFound()

    def ListSessions(self, request: api.ListSessionsRequest) -> api.ListSessionsResponse:
        """Two sessions a page, as a server with pages does."""
        self.list_requests.append(
            api.ListSessionsRequest(status=request.status, requested_after=request.requested_after)
        )
        start = int(request.page_token or 0)
        more = start + 2 < len(self.sessions)
        return api.ListSessionsResponse(
            sessions=self.sessions[start : start + 2], next_page_token=str(start + 2) if more else ""
        )

    def CancelSession(self, request: api.CancelSessionRequest) -> api.Session:
        self.calls.append(request)
        return api.Session(session_id=request.session_id, cancel_requested=True, status=pb.SESSION_STATUS_RUNNING)

    def ListJobs(self, request: api.ListJobsRequest) -> api.ListJobsResponse:
        self.calls.append(request)
        return api.ListJobsResponse(jobs=[api.Job(session_id=request.session_id, job_id="data-Account")])

    def GetRecordHistory(self, request: st.GetRecordHistoryRequest) -> st.GetRecordHistoryResponse:
        self.calls.append(request)
        if request.record_id != "001A":
            return st.GetRecordHistoryResponse()
        return st.GetRecordHistoryResponse(
            versions=[
                version(1, IDS[0], {"Id": "001A", "Name": "Acme", "Phone": "1"}),
                version(2, IDS[2], {"Id": "001A", "Name": "Acme Corp", "Phone": "1"}),
                version(3, IDS[2], {"Id": "001A", "Name": "Acme Corp", "Phone": "1"}, deleted=st.DELETED_STATE_SOFT),
            ]
        )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    services = Fake()
    monkeypatch.setattr(cli, "clients", lambda: services)
    yield services


def test_org_update_changes_only_what_is_given(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["org", "update", "prod", "--login-url", "https://new", "--sandbox"]) == 0
    [request] = fake.calls
    assert isinstance(request, disc.UpdateOrgRequest)
    assert request.org_id == "prod" and request.name == "" and request.sandbox is True
    c = request.connection
    assert (c.login_url, c.client_id, c.client_secret_ref) == ("https://new", "cid", "file:/s")
    assert "org prod updated" in capsys.readouterr().out
    assert cli.run(["org", "update", "prod", "--name", "Production"]) == 0
    renamed = fake.calls[-1]
    assert isinstance(renamed, disc.UpdateOrgRequest)
    assert renamed.name == "Production" and not renamed.HasField("connection") and not renamed.HasField("sandbox")
    assert cli.run(["org", "update", "prod"]) == 2  # nothing to change
    assert "nothing to change" in capsys.readouterr().err and len(fake.calls) == 2


def test_org_remove_and_policy_delete_need_yes(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["org", "remove", "prod"]) == 2
    assert cli.run(["policy", "delete", "nightly"]) == 2
    assert "--yes" in capsys.readouterr().err and fake.calls == []
    assert cli.run(["org", "remove", "prod", "--yes"]) == 0
    assert cli.run(["policy", "delete", "nightly", "--yes"]) == 0
    assert fake.calls == [disc.DeleteOrgRequest(org_id="prod"), disc.DeletePolicyRequest(policy_id="nightly")]
    out = capsys.readouterr().out
    assert "org prod removed" in out and "policy nightly deleted" in out


def test_session_list_filters(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["session", "ls", "--org", "prod", "--status", "success", "--since", "7d", "--json"]) == 0
    assert [s["session_id"] for s in json.loads(capsys.readouterr().out)] == [IDS[0], IDS[2]]  # across pages
    first = fake.list_requests[0]
    assert first.status == pb.SESSION_STATUS_SUCCESS and first.requested_after.seconds > 0  # asked of the server
    assert cli.run(["session", "list", "--org", "prod", "--limit", "1", "--json"]) == 0
    assert [s["session_id"] for s in json.loads(capsys.readouterr().out)] == [IDS[0]]
    assert cli.run(["session", "list", "--status", "finished"]) == 1
    assert "unknown status 'finished'" in capsys.readouterr().err


def test_a_session_id_by_a_unique_prefix(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["jobs", "list", "9c", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["session_id"] == IDS[2]
    assert cli.run(["jobs", "list", IDS[1], "--json"]) == 0  # a whole id: as it is
    assert json.loads(capsys.readouterr().out)[0]["session_id"] == IDS[1]
    assert cli.run(["session", "show", "3f2"]) == 1
    err = capsys.readouterr().err
    assert "ambiguous" in err and IDS[0] in err and IDS[1] in err and err.startswith("error (invalid_argument)")
    assert cli.run(["session", "cancel", "9c", "--reason", "wrong policy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cancel_requested"] is True
    assert fake.calls[-1] == api.CancelSessionRequest(session_id=IDS[2], reason="wrong policy")
    assert cli.run(["session", "show", "ffff"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error (not_found)") and "no session id starts with 'ffff'" in err


def test_record_restore_points(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["records", "restore-points", "Account", "001A", "--org", "prod", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(p["at"], p["version_id"], p["state"]) for p in shown] == [
        ("2026-12-03T02:00:00.000000Z", 3, "soft"),
        ("2026-12-02T02:00:00.000000Z", 2, "live"),
        ("2026-12-01T02:00:00.000000Z", 1, "live"),
    ]
    assert [p["changed_fields"] for p in shown] == [[], ["Name"], ["(first backup)"]]
    assert fake.calls[-1] == st.GetRecordHistoryRequest(org_id=SF_ORG, object_name="Account", record_id="001A")
    assert cli.run(["records", "restore-points", "Account", "001A", "--org", "prod"]) == 0
    table = capsys.readouterr().out
    assert "2026-12-02T02:00:00.000000Z" in table and "Name" in table and "Acme" not in table  # never values
    assert cli.run(["records", "restore-points", "Account", "001B", "--org", "prod"]) == 1
    assert capsys.readouterr().err.startswith("error (not_found): Account 001B has never been backed up")
