"""Damage detection's and alerting's pure rules (services/session/domain_anomaly.py, domain_alerts.py), no I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from services.platform.counts import Counts
from services.session import domain as d
from services.session import domain_alerts as alerts
from services.session import domain_anomaly as anomaly

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def past(n: int, objects: dict[str, Counts], *, initial: bool = False) -> anomaly.PastSession:
    return anomaly.PastSession(f"s{n}", T0 + dt.timedelta(days=n), initial, objects)


def history(deletes: list[int], records: int = 1000) -> anomaly.History:
    """An initial backup of `records` Contacts, then one incremental per entry of `deletes` (newest last)."""
    sessions = [past(0, {"Contact": Counts(new_versions=records)}, initial=True)]
    sessions += [past(i + 1, {"Contact": Counts(deleted=n, changed=5)}) for i, n in enumerate(deletes)]
    return anomaly.History(tuple(reversed(sessions)), {"Contact": records - sum(deletes)})


SETTINGS = anomaly.AnomalySettings(min_records=10)


def test_with_few_baseline_sessions_the_floors_alone_catch_a_mass_delete() -> None:
    [finding] = anomaly.judge("s9", {"Contact": Counts(deleted=300)}, history([]), SETTINGS)
    assert finding.kind == anomaly.MASS_DELETE and finding.object_name == "Contact"
    assert finding.count == 300 and finding.object_records == 1000 and finding.baseline_sessions == 0
    assert "300 records deleted (30.0 % of 1,000)" in finding.message and "floors alone" in finding.message
    assert finding.draft_session_id == anomaly.draft_session_id("s9", finding)  # deterministic
    assert finding.draft_session_id.startswith("draft-")


def test_below_a_floor_nothing_is_found() -> None:
    # 5 % of the object is under the 10 % floor; 9 records are under min_records
    assert anomaly.judge("s9", {"Contact": Counts(deleted=50)}, history([]), SETTINGS) == []
    small = anomaly.History(history([]).sessions, {"Contact": 20})
    assert anomaly.judge("s9", {"Contact": Counts(deleted=9)}, small, SETTINGS) == []


def test_with_a_baseline_the_count_must_also_stand_out_by_sigma() -> None:
    noisy = history([100, 140, 120, 130, 110], records=10_000)  # mean 120, stddev ~14
    assert anomaly.judge("s9", {"Contact": Counts(deleted=150)}, noisy, SETTINGS) == []  # under mean + 3 sigma
    [finding] = anomaly.judge("s9", {"Contact": Counts(deleted=1_200)}, noisy, SETTINGS)
    assert finding.baseline_sessions == 5 and finding.baseline_mean == 120
    assert round(finding.baseline_stddev, 2) == 14.14


def test_a_changed_and_a_created_flood_are_findings_too() -> None:
    found = anomaly.judge("s9", {"Contact": Counts(changed=600, new_versions=700)}, history([]), SETTINGS)
    assert [f.kind for f in found] == [anomaly.MASS_CHANGE, anomaly.MASS_CREATE]
    assert found[0].draft_session_id and not found[1].draft_session_id  # no draft undoes a create


def test_an_object_never_backed_up_before_and_disabled_settings_are_not_judged() -> None:
    assert anomaly.judge("s9", {"Lead": Counts(new_versions=5000)}, history([]), SETTINGS) == []
    off = dataclasses.replace(SETTINGS, disabled=True)
    assert anomaly.judge("s9", {"Contact": Counts(deleted=900)}, history([]), off) == []


def test_settings_zero_values_are_the_defaults() -> None:
    got = anomaly.AnomalySettings.from_json({"delete_pct": 25.0, "min_records": "50"})
    assert got == anomaly.AnomalySettings(delete_pct=25.0, min_records=50)
    assert got.with_defaults() == anomaly.AnomalySettings(
        sigma=3.0, baseline_sessions=30, min_records=50, delete_pct=25.0, change_pct=50.0, create_pct=50.0
    )
    # the judge applies them: 150 deletes of 1,000 records (15 %) stand out by the default 10 %, not by 25 %
    deletes = {"Contact": Counts(deleted=150)}
    assert anomaly.judge("s9", deletes, history([]), anomaly.AnomalySettings(min_records=50))
    assert not anomaly.judge("s9", deletes, history([]), got)


def _ended(status: d.Status, **changes: object) -> d.Session:
    job = d.Job("j1", "data", "Contact", d.Phase.FINISHED, d.Outcome.SUCCESS, reported=Counts(deleted=300))
    session = d.Session(session_id="s9", policy_id="p1", org_id="o1", status=status, jobs={"j1": job}, planned=True)
    return dataclasses.replace(session, **changes)  # type: ignore[arg-type]


def test_findings_make_a_success_warning_naming_them_and_failed_stays() -> None:
    finding = anomaly.judge("s9", {"Contact": Counts(deleted=300)}, history([]), SETTINGS)
    warned = d.with_findings(_ended(d.Status.SUCCESS), tuple(finding), T0)
    assert warned.status is d.Status.WARNING and "anomaly: Contact: 300 records deleted" in warned.reason
    assert warned.baseline_at == T0
    failed = d.with_findings(_ended(d.Status.FAILED, reason="all 1 jobs completed with errors"), tuple(finding))
    assert failed.status is d.Status.FAILED and failed.reason.startswith("all 1 jobs")
    assert d.object_counts(warned) == {"Contact": Counts(deleted=300)}


def test_an_alert_is_raised_for_what_the_policy_wants_with_redacted_targets() -> None:
    finding = anomaly.judge("s9", {"Contact": Counts(deleted=300)}, history([]), SETTINGS)
    settings = {
        "webhooks": [
            {"url_ref": "https://hooks.example.com/T000/secret-token", "format": "WEBHOOK_FORMAT_SLACK"},
            {"url_ref": "env:TEAMS_URL", "format": "WEBHOOK_FORMAT_TEAMS"},
        ],
        "emails": ["ops@example.com"],
    }
    ended = d.with_findings(_ended(d.Status.SUCCESS, alerts=settings), tuple(finding), T0)
    alert = alerts.alert_for(ended, T0)
    assert alert is not None and alert.kind == alerts.ANOMALY and alert.alert_id == alerts.alert_id("s9")
    assert [x.shown for x in alert.deliveries] == ["hooks.example.com", "env:…", "ops@example.com"]
    assert all("secret-token" not in x.shown for x in alert.deliveries)
    slack = json.loads(alerts.webhook_body(alert, alerts.SLACK))
    assert "300 records deleted" in slack["text"] and "run-draft" in slack["text"]
    teams = json.loads(alerts.webhook_body(alert, alerts.TEAMS))
    assert teams["@type"] == "MessageCard" and "300 records deleted" in teams["text"]
    plain = json.loads(alerts.webhook_body(alert, alerts.JSON))
    assert plain["findings"][0]["count"] == 300 and plain["kind"] == "anomaly"
    only_failures = dict(settings, on=["failed"])
    assert alerts.alert_for(dataclasses.replace(ended, alerts=only_failures), T0) is None
    assert alerts.alert_for(_ended(d.Status.SUCCESS, alerts=settings), T0) is None  # nothing to say


def test_what_triggers_an_alert() -> None:
    stalled = d.Job("j2", "data", "Lead", d.Phase.TERMINATED, d.Outcome.ERROR, message="uploaded nothing")
    budget = d.Job("j3", "data", "Case", d.Phase.FINISHED, d.Outcome.ERROR, message="stopped: the policy's API budget")
    session = _ended(d.Status.WARNING)
    session = dataclasses.replace(session, jobs={**session.jobs, "j2": stalled, "j3": budget})
    assert alerts.triggers(session) == [alerts.WARNING, alerts.STALLED, alerts.BUDGET]
    restore = dataclasses.replace(
        _ended(d.Status.WARNING),
        kind=d.Kind.RESTORE,
        jobs={
            "r": d.Job(
                "r",
                "restore",
                phase=d.Phase.FINISHED,
                outcome=d.Outcome.WARNING,
                verification=d.Verification(done=True, differing=2),
            )
        },
    )
    assert alerts.VERIFICATION in alerts.triggers(restore)
    assert alerts.triggers(_ended(d.Status.STOPPED)) == []


def test_a_failed_delivery_backs_off_then_gives_up() -> None:
    pending = alerts.Delivery("webhook", "https://h.example/x", "h.example", next_attempt_at=T0)
    base = dt.timedelta(seconds=1)
    once = alerts.after_attempt(pending, T0, "HTTP 503", base, max_attempts=3)
    assert once.status == "pending" and once.attempts == 1 and once.next_attempt_at == T0 + base
    twice = alerts.after_attempt(once, T0, "HTTP 503", base, max_attempts=3)
    assert twice.next_attempt_at == T0 + 2 * base
    assert alerts.after_attempt(twice, T0, "HTTP 503", base, max_attempts=3).status == "failed"
    done = alerts.after_attempt(once, T0, "", base)
    assert done.status == "delivered" and done.delivered_at == T0 and done.attempts == 2


def test_a_count_check_that_still_disagrees_is_a_finding_naming_the_object_and_both_counts() -> None:
    said = {
        "Lead": "incremental (window); reconciled 98 Ids, 3 hard-deleted",
        "Opportunity": "incremental (window); count check of Opportunity: 19 records in the org, 20 in the backup"
        " after the Id reconciliation: 1 records live in the backup are not in the org's count (deleted while the"
        " backup ran, into the recycle bin): the next session's delete log stores them",
    }
    [finding] = anomaly.count_findings(said)
    assert (finding.kind, finding.object_name, finding.count, finding.object_records) == (
        "count_mismatch",
        "Opportunity",
        1,
        20,
    )
    assert finding.message.startswith("count check of Opportunity: 19 records in the org, 20 in the backup")
    assert not finding.draft_session_id  # nothing to undo: the next session settles it
    assert anomaly.summary([finding]).startswith("counts disagree: count check of Opportunity")
    assert anomaly.count_findings({"Lead": "incremental (window)"}) == []


def test_a_count_mismatch_is_named_in_the_reason_and_leaves_the_status() -> None:
    [finding] = anomaly.count_findings({"Case": "count check of Case: 96 records in the org, 95 in the backup: x"})
    done = d.Session(session_id="s1", status=d.Status.SUCCESS, reason="")
    judged = d.with_findings(done, (finding,))
    assert judged.status == d.Status.SUCCESS and "count check of Case: 96 records in the org" in judged.reason
    mass = dataclasses.replace(finding, kind="mass_delete", message="Case: 500 records deleted")
    assert d.with_findings(done, (finding, mass)).status == d.Status.WARNING
