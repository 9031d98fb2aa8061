"""How the CLI shows a policy to a person (a short report, `policy list`'s rows) and its schedule's time zone.

A schedule's times of day are in the policy's IANA time zone (`--time-zone Europe/Paris`; empty: UTC), always
shown beside it. A discovery that does not keep the time zone answers the policy without it: the CLI then says
so rather than let the schedule silently run in UTC.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from sfvault.discovery.v1 import discovery_pb2 as disc

from services.cli import protect, render


class TimeZoneError(ValueError):
    pass


def time_zone(name: str) -> str:
    """An IANA time zone name as given (checked), '' for UTC."""
    name = name.strip()
    if name.upper() in ("", "UTC", "Z"):
        return ""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise TimeZoneError(
            f"unknown time zone {name!r}: an IANA name, e.g. Europe/Paris or America/New_York"
        ) from None
    return name


def schedule_text(p: disc.Policy) -> str:
    """The schedule with its time zone: 'daily@02:00 Europe/Paris', 'hourly', 'manual only'."""
    if not p.schedule:
        return "manual only"
    if p.schedule.strip().lower() == "hourly":
        return "hourly"
    return f"{p.schedule} {p.time_zone or 'UTC'}"


def check_kept(asked: str, answered: disc.Policy) -> None:
    """The time zone asked for is the one the policy now has (else discovery does not keep time zones)."""
    if asked != answered.time_zone:
        raise TimeZoneError(
            f"discovery did not keep the time zone {asked or 'UTC'!r}: policy {answered.policy_id}'s schedule "
            f"runs in {answered.time_zone or 'UTC'}"
        )


def _duration(value: Any, default: str) -> str:
    seconds = value.seconds
    if not seconds:
        return default
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return str(dt.timedelta(seconds=seconds))


def backs_up(p: disc.Policy) -> str:
    objects = ", ".join(p.scope.include_objects) or "every object"
    if p.scope.exclude_objects:
        objects += f" but {', '.join(p.scope.exclude_objects)}"
    extras = [name for name, on in (("files", p.files), ("metadata", p.metadata)) if on]
    return objects + (f"; {' and '.join(extras)}" if extras else "")


def report(p: disc.Policy) -> list[tuple[str, str]]:
    """`policy show`: a line per setting (webhooks by their host: their URLs carry tokens)."""
    alerts, retention, hold = protect.protection_summary(p)
    budget = p.api_budget
    a = p.anomalies
    return [
        ("policy", f"{p.policy_id} ({p.name})" if p.name else p.policy_id),
        ("org", p.org_id),
        ("schedule", schedule_text(p)),
        ("backs up", backs_up(p)),
        (
            "new objects / fields",
            f"{'added' if p.auto_add_new_objects else 'not added'} / "
            f"{'added' if p.auto_add_new_fields else 'not added'}",
        ),
        (
            "API budget",
            f"{budget.daily_share_percent or 50}% of the daily limit"
            + (f", at most {budget.per_run_cap:,} calls a session" if budget.per_run_cap else ""),
        ),
        ("stall timeout", _duration(p.stall_timeout, "24h")),
        ("Id reconciliation", f"every {_duration(p.reconcile_every, '7d')}"),
        ("retention", retention),
        ("legal hold", "on hold" if hold != "-" else "no"),
        ("alerts", alerts + (f" on {', '.join(p.alerts.on)}" if p.alerts.on else "")),
        ("anomalies", "off" if a.disabled else "on"),
        ("sensitive fields", ", ".join(p.sensitive_fields) or "-"),
        ("updated", render.ts(p.updated_at)),
    ]


LIST_COLUMNS = ("policy", "org", "schedule", "backs up", "retention", "alerts", "hold")


def row(p: disc.Policy) -> tuple[str, ...]:
    alerts, retention, hold = protect.protection_summary(p)
    return (p.policy_id, p.org_id, schedule_text(p), backs_up(p), retention, alerts, hold)
