"""`sfvault policy update` protection options, `policy show/list` (webhook URLs by their host only),
`sfvault alerts list` and `sfvault restore run-draft`, on fake services."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.protect.v1 import protect_pb2 as ppb
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.session.v1 import session_pb2 as api

from services.cli import __main__ as cli
from services.cli import protect

HOOK = "https://hooks.example.com/services/T0/B0/secret-token"


def draft_session() -> api.Session:
    spec = rpb.RestoreSpec(source_org_id="prod", target_org_id="prod", dry_run=True, parents=0, children=0)
    spec.as_of.FromJsonString("2026-12-01T02:00:00Z")
    selection = spec.selections.add(object_name="Contact")
    selection.deleted_since.FromJsonString("2026-12-01T02:00:00Z")
    return api.Session(
        session_id="draft-1",
        org_id="prod",
        kind=rpb.SESSION_KIND_RESTORE,
        status=pb.SESSION_STATUS_SUCCESS,
        restore=spec,
        draft_of="s3",
    )


class FakeServices:
    def __init__(self) -> None:
        self.policy = disc.Policy(policy_id="p1", org_id="prod", name="nightly")
        self.updated: list[disc.Policy] = []
        self.started: list[api.StartSessionRequest] = []
        self.alerts_asked: list[api.ListAlertsRequest] = []
        self.sessions = {"draft-1": draft_session(), "s3": api.Session(session_id="s3", org_id="prod")}
        self.discovery, self.session, self.storage = self, self, self

    def GetPolicy(self, request: disc.GetPolicyRequest) -> disc.Policy:
        return self.policy

    def UpdatePolicy(self, request: disc.UpdatePolicyRequest) -> disc.Policy:
        self.updated.append(request.policy)
        self.policy = request.policy
        return request.policy

    def ListPolicies(self, request: disc.ListPoliciesRequest) -> disc.ListPoliciesResponse:
        return disc.ListPoliciesResponse(policies=[self.policy])

    def GetOrg(self, request: disc.GetOrgRequest) -> disc.Org:
        return disc.Org(org_id=request.org_id, sandbox=False)

    def GetSession(self, request: api.GetSessionRequest) -> api.Session:
        return self.sessions[request.session_id]

    def StartSession(self, request: api.StartSessionRequest) -> api.Session:
        self.started.append(request)
        return api.Session(
            session_id="r9", status=pb.SESSION_STATUS_PENDING, kind=request.kind, restore=request.restore
        )

    def ListAlerts(self, request: api.ListAlertsRequest) -> api.ListAlertsResponse:
        self.alerts_asked.append(request)
        finding = ppb.Finding(kind="mass_delete", object_name="Contact", count=60, draft_session_id="draft-1")
        alert = ppb.Alert(
            alert_id="a1",
            session_id="s3",
            policy_id="p1",
            kind="anomaly",
            message="backup session s3 ended WARNING: anomaly: Contact: 60 records deleted",
            findings=[finding],
            deliveries=[
                ppb.Delivery(channel="webhook", target="hooks.example.com", status="delivered", attempts=2),
                ppb.Delivery(channel="email", target="ops@example.com", status="pending", attempts=1, last_error="x"),
            ],
        )
        alert.at.FromJsonString("2026-12-01T03:00:00Z")
        return api.ListAlertsResponse(alerts=[alert])


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServices]:
    services = FakeServices()
    monkeypatch.setattr(cli, "clients", lambda: services)
    yield services


def test_policy_update_sets_the_protection_options_and_shows_no_url(
    fake: FakeServices, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["policy", "update", "p1", "--alert-webhook", f"{HOOK},slack", "--alert-webhook", "env:TEAMS_HOOK,teams"]
    args += ["--alert-email", "ops@example.com", "--retention-days", "90", "--retention-versions", "10"]
    args += ["--anomaly-delete-pct", "20", "--anomaly-change-pct", "40", "--anomaly-min-records", "5", "--legal-hold"]
    assert cli.run([*args, "--json"]) == 0
    [sent] = fake.updated
    assert [(h.url_ref, h.format) for h in sent.alerts.webhooks] == [
        (HOOK, ppb.WEBHOOK_FORMAT_SLACK),
        ("env:TEAMS_HOOK", ppb.WEBHOOK_FORMAT_TEAMS),
    ]
    assert list(sent.alerts.emails) == ["ops@example.com"]
    assert (sent.retention.days, sent.retention.versions, sent.legal_hold) == (90, 10, True)
    assert (sent.anomalies.delete_pct, sent.anomalies.change_pct, sent.anomalies.min_records) == (20, 40, 5)
    assert sent.name == "nightly"  # what was not given stays
    out = capsys.readouterr().out
    assert "secret-token" not in out
    shown = json.loads(out)
    assert shown["alerts"]["webhooks"][0]["url_ref"] == "https://hooks.example.com/…"
    assert shown["alerts"]["webhooks"][1]["url_ref"] == "env:TEAMS_HOOK"

    assert cli.run(["policy", "update", "p1", "--no-legal-hold", "--json"]) == 0
    assert not fake.updated[-1].legal_hold and len(fake.updated[-1].alerts.webhooks) == 2
    assert cli.run(["policy", "list"]) == 0
    listed = capsys.readouterr().out
    assert "90 days, 10 versions" in listed and "hooks.example.com" in listed and "secret-token" not in listed


def test_policy_update_sets_the_sensitive_fields(fake: FakeServices) -> None:
    assert cli.run(["policy", "update", "p1", "--sensitive", "Contact.Email, Lead.Email", "--sensitive", "X.Y"]) == 0
    assert list(fake.updated[-1].sensitive_fields) == ["Contact.Email", "Lead.Email", "X.Y"]
    assert cli.run(["policy", "update", "p1", "--retention-days", "3"]) == 0  # not given: kept
    assert list(fake.updated[-1].sensitive_fields) == ["Contact.Email", "Lead.Email", "X.Y"]
    assert cli.run(["policy", "update", "p1", "--sensitive", ""]) == 0  # none any more
    assert list(fake.updated[-1].sensitive_fields) == []


def test_a_webhook_option_without_a_format_is_json() -> None:
    assert protect.webhook("https://h.example.com/a,b").format == ppb.WEBHOOK_FORMAT_JSON
    assert protect.webhook("https://h.example.com/a,b").url_ref == "https://h.example.com/a,b"
    assert protect.webhook("https://h.example.com/x, Teams").format == ppb.WEBHOOK_FORMAT_TEAMS


def test_alerts_list_shows_the_deliveries_and_json_for_scripts(
    fake: FakeServices, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run(["alerts", "list", "--policy", "p1", "--kind", "anomaly"]) == 0
    out = capsys.readouterr().out
    assert "anomaly" in out and "s3" in out and "hooks.example.com: delivered (2)" in out
    assert fake.alerts_asked[0].policy_id == "p1" and fake.alerts_asked[0].kind == "anomaly"
    assert cli.run(["alerts", "list", "--json"]) == 0
    [alert] = json.loads(capsys.readouterr().out)
    assert alert["findings"][0]["count"] == 60 and alert["deliveries"][1]["status"] == "pending"


def test_run_draft_starts_the_draft_s_spec_for_real_and_production_needs_yes(
    fake: FakeServices, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run(["restore", "run-draft", "draft-1"]) == 2
    assert "production org: give --yes" in capsys.readouterr().err and fake.started == []
    assert cli.run(["restore", "run-draft", "draft-1", "--yes", "--json"]) == 0
    [request] = fake.started
    assert request.kind == rpb.SESSION_KIND_RESTORE and request.org_id == "prod" and request.trigger == "draft"
    spec: Any = request.restore
    assert not spec.dry_run and spec.confirmed and spec.parents == 0 and spec.children == 0
    assert spec.selections[0].object_name == "Contact" and spec.selections[0].HasField("deleted_since")
    assert spec.as_of == draft_session().restore.as_of
    assert cli.run(["restore", "run-draft", "s3", "--yes"]) == 2
    assert "not a restore draft" in capsys.readouterr().err
