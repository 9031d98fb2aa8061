"""A policy's protection settings (issue 18): alerts, anomaly detection, retention and legal hold are checked
(INVALID_ARGUMENT naming the field, never echoing a webhook's URL), stored and returned, and a backup's
SessionStarted carries the alert and anomaly settings to the session service."""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc
import pytest
from sfvault.discovery.v1 import discovery_pb2 as api
from sfvault.protect.v1 import protect_pb2 as ppb

from services.discovery import domain as d
from services.discovery import translate
from tests.discovery.conftest import Running
from tests.discovery.test_api import CONNECTION

HOOK = "https://hooks.example.com/services/T0/B0/secret-token"


def protected(**changes: Any) -> d.Policy:
    policy = d.Policy(
        policy_id="p1",
        org_id="acme",
        alerts=d.AlertSettings((d.Webhook(HOOK, "slack"), d.Webhook("env:TEAMS_HOOK", "teams")), ("ops@example.com",)),
        anomalies=d.AnomalySettings(sigma=2.5, min_records=10, delete_pct=20),
        retention=d.RetentionSettings(days=90, versions=10),
        legal_hold=True,
    )
    return dataclasses.replace(policy, **changes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"alerts": d.AlertSettings((d.Webhook("ftp://x.example.com/secret-token"),))}, "alerts.webhooks[0].url_ref"),
        ({"alerts": d.AlertSettings((d.Webhook("hooks.example.com/secret-token"),))}, "alerts.webhooks[0].url_ref"),
        ({"alerts": d.AlertSettings((d.Webhook(HOOK, "xml"),))}, "alerts.webhooks[0].format"),
        ({"alerts": d.AlertSettings(emails=("ops@example.com", "not an address"))}, "alerts.emails[1]"),
        ({"alerts": d.AlertSettings(on=("failed", "rain"))}, "alerts.on[1]"),
        ({"anomalies": d.AnomalySettings(sigma=-1)}, "anomalies.sigma"),
        ({"anomalies": d.AnomalySettings(sigma=float("nan"))}, "anomalies.sigma"),
        ({"anomalies": d.AnomalySettings(delete_pct=101)}, "anomalies.delete_pct"),
        ({"anomalies": d.AnomalySettings(change_pct=-1)}, "anomalies.change_pct"),
        ({"anomalies": d.AnomalySettings(min_records=-5)}, "anomalies.min_records"),
        ({"anomalies": d.AnomalySettings(baseline_sessions=-1)}, "anomalies.baseline_sessions"),
        ({"retention": d.RetentionSettings(days=-1)}, "retention.days"),
        ({"retention": d.RetentionSettings(versions=-2)}, "retention.versions"),
    ],
)
def test_bad_protection_settings_are_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(d.InvalidPolicy) as refused:
        d.check_policy(protected(**changes))
    assert field in str(refused.value) and "secret-token" not in str(refused.value)


def test_good_settings_pass_and_survive_protobuf() -> None:
    policy = d.check_policy(protected())
    assert translate.policy_from_pb(translate.policy_to_pb(policy)) == policy
    d.check_policy(protected(alerts=d.AlertSettings((d.Webhook("file:/run/secrets/hook"),), on=("anomaly",))))


async def test_settings_are_stored_returned_and_refused_over_grpc(running: Running) -> None:
    stub = running.stub
    await stub.CreateOrg(api.CreateOrgRequest(org_id="acme", connection=CONNECTION))
    policy = translate.policy_to_pb(protected())
    created = await stub.CreatePolicy(api.CreatePolicyRequest(policy=policy))
    assert created.alerts == policy.alerts and created.anomalies == policy.anomalies
    assert created.retention.days == 90 and created.retention.versions == 10 and created.legal_hold
    assert created.alerts.webhooks[0].format == ppb.WEBHOOK_FORMAT_SLACK
    created.legal_hold = False
    created.anomalies.delete_pct = 30
    del created.alerts.webhooks[1:]
    updated = await stub.UpdatePolicy(api.UpdatePolicyRequest(policy=created))
    assert not updated.legal_hold and updated.anomalies.delete_pct == 30 and len(updated.alerts.webhooks) == 1
    fetched = await stub.GetPolicy(api.GetPolicyRequest(policy_id="p1"))
    assert fetched.anomalies == updated.anomalies and fetched.alerts == updated.alerts

    bad = api.Policy()
    bad.CopyFrom(fetched)
    bad.alerts.webhooks[0].url_ref = "gopher://hooks.example.com/secret-token"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UpdatePolicy(api.UpdatePolicyRequest(policy=bad))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "alerts.webhooks[0].url_ref" in (refused.value.details() or "")
    assert "secret-token" not in (refused.value.details() or "")
    bad.CopyFrom(fetched)
    bad.anomalies.change_pct = 250
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UpdatePolicy(api.UpdatePolicyRequest(policy=bad))
    assert "anomalies.change_pct" in (refused.value.details() or "")


async def test_a_backup_s_session_started_carries_the_policy_s_alerts_and_anomalies(
    running: Running, connection: api.OrgConnection, org: dict[str, Any]
) -> None:
    await running.create_org(connection)
    alerts = ppb.AlertSettings(webhooks=[ppb.Webhook(url_ref="env:HOOK_URL", format=ppb.WEBHOOK_FORMAT_TEAMS)])
    alerts.emails.append("ops@example.com")
    anomalies = ppb.AnomalySettings(min_records=5, delete_pct=25)
    await running.create_policy("p1", alerts=alerts, anomalies=anomalies, files=False, metadata=False)
    await running.request("s1", "p1", "org-1")
    envs = await running.outcome("s1")
    started = envs[1].session_started
    assert started.alerts == alerts and started.anomalies == anomalies
