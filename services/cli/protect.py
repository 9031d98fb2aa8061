"""The CLI's protection pieces (issue 18), pure: a policy's alert, anomaly, retention and hold options, how a
policy and an alert are shown (a webhook's URL never: its host only), and the restore a draft becomes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.protect.v1 import protect_pb2 as ppb
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.session.v1 import session_pb2 as api

from services.cli import render

FORMATS = {"json": ppb.WEBHOOK_FORMAT_JSON, "slack": ppb.WEBHOOK_FORMAT_SLACK, "teams": ppb.WEBHOOK_FORMAT_TEAMS}
FORMAT_NAMES = {v: k for k, v in FORMATS.items()} | {ppb.WEBHOOK_FORMAT_UNSPECIFIED: "json"}


class ProtectOptionError(ValueError):
    pass


def webhook(text: str) -> ppb.Webhook:
    """`URL[,FORMAT]` (FORMAT json, slack or teams; default json); the URL may be a secret reference."""
    url, _, fmt = text.rpartition(",")
    if not url or fmt.strip().lower() not in FORMATS:
        url, fmt = text, "json"
    url = url.strip()
    if not url:
        raise ProtectOptionError("--alert-webhook needs a URL (or a secret reference env:NAME / file:/path)")
    return ppb.Webhook(url_ref=url, format=FORMATS[fmt.strip().lower()])


def apply_options(policy: disc.Policy, opts: dict[str, Any]) -> disc.Policy:
    """The policy with the protection options given (a repeatable option given replaces its list)."""
    if opts.get("alert_webhook") is not None:
        del policy.alerts.webhooks[:]
        policy.alerts.webhooks.extend(webhook(t) for t in opts["alert_webhook"] if t)
    if opts.get("alert_email") is not None:
        del policy.alerts.emails[:]
        policy.alerts.emails.extend(e.strip() for e in opts["alert_email"] if e.strip())
    if opts.get("alert_on") is not None:
        del policy.alerts.on[:]
        policy.alerts.on.extend(k.strip() for t in opts["alert_on"] for k in t.split(",") if k.strip())
    for option, name in (
        ("anomaly_delete_pct", "delete_pct"),
        ("anomaly_change_pct", "change_pct"),
        ("anomaly_create_pct", "create_pct"),
        ("anomaly_min_records", "min_records"),
        ("anomaly_sigma", "sigma"),
    ):
        if opts.get(option) is not None:
            setattr(policy.anomalies, name, opts[option])
    if opts.get("anomalies") is not None:
        policy.anomalies.disabled = not opts["anomalies"]
    if opts.get("retention_days") is not None:
        policy.retention.days = opts["retention_days"]
    if opts.get("retention_versions") is not None:
        policy.retention.versions = opts["retention_versions"]
    if opts.get("legal_hold") is not None:
        policy.legal_hold = opts["legal_hold"]
    if opts.get("sensitive") is not None:
        del policy.sensitive_fields[:]
        policy.sensitive_fields.extend(n.strip() for t in opts["sensitive"] for n in t.split(",") if n.strip())
    return policy


def shown_url(url_ref: str) -> str:
    """A webhook as shown: a secret reference as is (it holds no secret), a URL by its host."""
    if url_ref.startswith(("env:", "file:")):
        return url_ref
    return f"{urlsplit(url_ref).scheme}://{urlsplit(url_ref).hostname or '?'}/…"


def policy_dict(policy: disc.Policy) -> dict[str, Any]:
    """The policy as shown (`policy show`, `--json` too): webhook URLs by their host only."""
    shown = render.as_dict(policy)
    for hook in shown.get("alerts", {}).get("webhooks", []):
        hook["url_ref"] = shown_url(hook.get("url_ref", ""))
    return shown


def protection_summary(policy: disc.Policy) -> tuple[str, str, str]:
    """(alerts, retention, hold) cells of `policy list`."""
    a = policy.alerts
    alerts = ", ".join(
        [f"{FORMAT_NAMES.get(h.format, 'json')} {shown_url(h.url_ref)}" for h in a.webhooks] + list(a.emails)
    )
    r = policy.retention
    parts = [f"{r.days} days" if r.days else "", f"{r.versions} versions" if r.versions else ""]
    retention = ", ".join(p for p in parts if p) or "forever"
    return alerts or "-", retention, "on hold" if policy.legal_hold else "-"


def alert_row(alert: ppb.Alert) -> tuple[str, str, str, str, str]:
    deliveries = "; ".join(
        f"{d.channel} {d.target}: {d.status} ({d.attempts})" + (f" {d.last_error}" if d.status != "delivered" else "")
        for d in alert.deliveries
    )
    return (render.ts(alert.at), alert.kind, alert.session_id, alert.message, deliveries or "-")


def draft_request(draft: api.Session, yes: bool) -> api.StartSessionRequest:
    """A restore draft run for real: a new session with the draft's spec, not a dry run (`--yes` confirms a
    production org)."""
    if not draft.draft_of or draft.kind != rpb.SESSION_KIND_RESTORE:
        raise ProtectOptionError(f"session {draft.session_id} is not a restore draft (no finding prepared it)")
    spec = rpb.RestoreSpec()
    spec.CopyFrom(draft.restore)
    spec.dry_run = False
    spec.confirmed = yes
    spec.requested_by = ""  # the session service sets who asks now
    spec.source_org_id = spec.source_org_id or draft.org_id
    return api.StartSessionRequest(
        org_id=spec.source_org_id, kind=rpb.SESSION_KIND_RESTORE, restore=spec, trigger="draft"
    )


def alerts_json(alerts: Sequence[ppb.Alert]) -> list[dict[str, Any]]:
    return [render.as_dict(a) for a in alerts]
