"""Alerts, pure: which ending of a session alerts, what the alert says, what each channel receives, and when a
failed delivery is tried again.

A session alerts once, as it ends, when any of these holds (each a *trigger*; the policy's `on` list chooses
which alert, empty: all): `failed` (status Failed), `warning` (status Warning), `anomaly` (a mass delete,
change or create found), `stalled` (a job terminated by the stall timeout), `budget` (a job stopped because the
API budget or the org's daily limit was spent: the jobrunner says so in the job's message), `verification` (a
restore's read-back differs from the backup). The alert's kind is the most telling trigger (the order above,
reversed). Its id is derived from the session's, so announcing the end again stores no second alert.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from services.session import domain as d
from services.session.domain_anomaly import DRAFTED, Finding

FAILED, WARNING, ANOMALY, STALLED, BUDGET, VERIFICATION = (
    "failed",
    "warning",
    "anomaly",
    "stalled",
    "budget",
    "verification",
)
KINDS = (FAILED, WARNING, ANOMALY, STALLED, BUDGET, VERIFICATION)
_PRIORITY = (ANOMALY, VERIFICATION, BUDGET, STALLED, FAILED, WARNING)  # the alert's kind: the first that holds
# how jobrunner words a stop for the API budget (sfclient.ApiLimitExceeded: the run's cap, the org's reserve or
# REQUEST_LIMIT_EXCEEDED)
_BUDGET = re.compile(r"API budget|daily API request|REQUEST_LIMIT_EXCEEDED", re.IGNORECASE)
_NAMESPACE = uuid.UUID("0b6a3d52-4f7c-4c1e-a1d2-58c4f1e9e0a3")

JSON, SLACK, TEAMS = "json", "slack", "teams"
_FORMATS = {
    "WEBHOOK_FORMAT_UNSPECIFIED": JSON,
    "WEBHOOK_FORMAT_JSON": JSON,
    "WEBHOOK_FORMAT_SLACK": SLACK,
    "WEBHOOK_FORMAT_TEAMS": TEAMS,
}


@dataclass(frozen=True, slots=True)
class Webhook:
    url_ref: str  # the URL or a secret reference to it: never logged, never shown
    format: str = JSON


@dataclass(frozen=True, slots=True)
class AlertSettings:
    webhooks: tuple[Webhook, ...] = ()
    emails: tuple[str, ...] = ()
    on: frozenset[str] = frozenset()  # empty: every kind

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertSettings:
        """From sfvault.protect.v1.AlertSettings's JSON form (proto field names)."""
        hooks = tuple(
            Webhook(str(h.get("url_ref", "")), _FORMATS.get(str(h.get("format", "")), JSON))
            for h in data.get("webhooks", ())
            if h.get("url_ref")
        )
        return cls(hooks, tuple(str(e) for e in data.get("emails", ())), frozenset(str(k) for k in data.get("on", ())))

    def wants(self, kind: str) -> bool:
        return not self.on or kind in self.on


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: str  # "webhook" / "email"
    target: str  # where to (the webhook's url_ref, the address): kept by the store, never shown
    shown: str  # redacted: the webhook's host, the address
    format: str = JSON
    status: str = "pending"
    attempts: int = 0
    last_error: str = ""
    delivered_at: dt.datetime | None = None
    next_attempt_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    session_id: str
    policy_id: str
    org_id: str
    kind: str
    message: str
    at: dt.datetime
    findings: tuple[Finding, ...] = ()
    deliveries: tuple[Delivery, ...] = ()


def triggers(session: d.Session) -> list[str]:
    """What in the session's ending alerts (none while it runs; a Stopped session alerts for nothing else)."""
    if not session.is_final or session.status == d.Status.STOPPED:
        return []
    found = []
    if session.status == d.Status.FAILED:
        found.append(FAILED)
    if session.status == d.Status.WARNING:
        found.append(WARNING)
    if session.findings:
        found.append(ANOMALY)
    terminated = [j for j in session.jobs.values() if j.phase == d.Phase.TERMINATED and j.outcome == d.Outcome.ERROR]
    if terminated or (session.failure_reason and "stall timeout" in session.failure_reason):
        found.append(STALLED)
    if any(_BUDGET.search(j.message) for j in session.jobs.values() if j.outcome == d.Outcome.ERROR):
        found.append(BUDGET)
    if session.is_restore and session.verification.done and session.verification.differing > 0:
        found.append(VERIFICATION)
    return found


def _job_problems(session: d.Session, limit: int = 3) -> list[str]:
    """What went wrong in its jobs, by their messages (a stall's reason, a spent budget, an error): the first few."""
    failed = sorted(
        (j for j in session.jobs.values() if j.outcome == d.Outcome.ERROR and j.message),
        key=lambda j: (j.object_name or j.job_type, j.job_id),
    )
    lines = [f"{j.object_name or j.job_type or j.job_id}: {j.message}" for j in failed[:limit]]
    if len(failed) > limit:
        lines.append(f"… and {len(failed) - limit} more jobs")
    return lines


def redact(url: str) -> str:
    """A webhook as shown: its host (a secret reference: the reference's kind only)."""
    if url.startswith(("env:", "file:")):
        return url.split(":", 1)[0] + ":…"
    return urlsplit(url).hostname or "webhook"


def alert_id(session_id: str) -> str:
    return "alert-" + uuid.uuid5(_NAMESPACE, session_id).hex


def alert_for(session: d.Session, at: dt.datetime) -> Alert | None:
    """The alert the session's end raises under its policy's settings, with a pending delivery per channel; None
    when nothing alerts or the policy does not want it."""
    settings = AlertSettings.from_json(session.alerts)
    wanted = [k for k in triggers(session) if settings.wants(k)]
    if not wanted:
        return None
    kind = next(k for k in _PRIORITY if k in wanted)
    what = "restore" if session.is_restore else "backup"
    message = f"{what} session {session.session_id} ended {session.status.value}"
    if session.reason:
        message += f": {session.reason}"
    message += "".join(f"; {line}" for line in _job_problems(session))
    deliveries = tuple(
        Delivery("webhook", h.url_ref, redact(h.url_ref), h.format, next_attempt_at=at) for h in settings.webhooks
    )
    deliveries += tuple(Delivery("email", e, e, next_attempt_at=at) for e in settings.emails)
    return Alert(
        alert_id=alert_id(session.session_id),
        session_id=session.session_id,
        policy_id=session.policy_id,
        org_id=session.org_id,
        kind=kind,
        message=message,
        at=at,
        findings=session.findings,
        deliveries=deliveries,
    )


# ---- what each channel receives ------------------------------------------------------------------------


def as_json(alert: Alert) -> dict[str, Any]:
    """The alert as a JSON object (the webhook's plain body): no delivery targets in it."""
    return {
        "alert_id": alert.alert_id,
        "kind": alert.kind,
        "session_id": alert.session_id,
        "policy_id": alert.policy_id,
        "org_id": alert.org_id,
        "message": alert.message,
        "at": alert.at.isoformat(),
        "findings": [f.to_json() for f in alert.findings],
    }


def _lines(alert: Alert) -> list[str]:
    lines = [f"[sfvault] {alert.kind}: {alert.message}"]
    for f in alert.findings:
        line = f"- {f.kind} {f.message}"
        if f.kind in DRAFTED and f.draft_session_id:
            draft = f.draft_session_id
            line += f" — restore draft {draft}: review it, then `sfvault restore run-draft {draft}`"
        lines.append(line)
    return lines


def webhook_body(alert: Alert, fmt: str) -> bytes:
    """The body posted to a webhook in its format: plain JSON, Slack's incoming webhook, or a Teams card."""
    text = "\n".join(_lines(alert))
    body: dict[str, Any]
    if fmt == SLACK:
        body = {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
    elif fmt == TEAMS:
        body = {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": f"sfvault {alert.kind}",
            "themeColor": "D70000" if alert.kind in (FAILED, ANOMALY) else "FFA500",
            "title": f"sfvault {alert.kind}: session {alert.session_id}",
            "text": text.replace("\n", "\n\n"),
        }
    else:
        body = as_json(alert)
    return json.dumps(body, separators=(",", ":")).encode()


def email(alert: Alert) -> tuple[str, str]:
    """(subject, plain-text body)."""
    subject = f"[sfvault] {alert.kind}: session {alert.session_id}"
    return subject, "\n".join(_lines(alert)) + "\n"


# ---- retries ------------------------------------------------------------------------------------------

MAX_ATTEMPTS = 8


def after_attempt(
    delivery: Delivery, now: dt.datetime, error: str, base: dt.timedelta, max_attempts: int = MAX_ATTEMPTS
) -> Delivery:
    """The delivery after an attempt: delivered (error empty), else tried again after base * 2^(attempts-1)
    (at most 64 times base), until `max_attempts` attempts: then failed."""
    attempts = delivery.attempts + 1
    if not error:
        return dataclasses.replace(
            delivery, status="delivered", attempts=attempts, last_error="", delivered_at=now, next_attempt_at=None
        )
    if attempts >= max_attempts:
        return dataclasses.replace(delivery, status="failed", attempts=attempts, last_error=error, next_attempt_at=None)
    wait = base * min(2 ** (attempts - 1), 64)
    return dataclasses.replace(delivery, attempts=attempts, last_error=error, next_attempt_at=now + wait)


def draft_findings(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.kind in DRAFTED and f.draft_session_id]
