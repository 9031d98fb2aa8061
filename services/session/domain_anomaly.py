"""Damage detection, pure: a backup session's per-object deletes, changes and creates judged against the same
object's history in the policy's earlier backups.

The rules (issue 18, sfvault.protect.v1.AnomalySettings):

- What is judged: each object a data job of the session read, its `deleted`, `changed` and `new_versions`
  (created) counts. A first (initial) session is never judged, nor an object the policy never backed up before
  (its first read is full: every record is "created").
- The floors: a count is anomalous only when it is at least `min_records` AND at least its percentage of the
  object's records before the session (`delete_pct`, `change_pct`, `create_pct`).
- The baseline: the same count of the object in the policy's last `baseline_sessions` finished backups that were
  not initial (Success or Warning). With 3 of them or more, the count must also be more than `sigma` standard
  deviations above their mean; with fewer, the floors alone judge (so a mass delete on the second incremental
  is caught).
- The object's records before the session: what the session service knows, the sum over every earlier backup
  of the policy of the object's new versions (records first seen) less its deleted versions.

A finding names the object, the counts and the baseline; for a mass delete or a mass change it names the restore
draft prepared for it (`draft_session_id`: deterministic, so a redelivered finish does not prepare two).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.platform.counts import Counts
from services.platform.protect import AnomalySettings as AnomalySettings  # one type: protect.v1.AnomalySettings

MASS_DELETE = "mass_delete"
MASS_CHANGE = "mass_change"
MASS_CREATE = "mass_create"
DRAFTED = frozenset({MASS_DELETE, MASS_CHANGE})  # the kinds a restore draft undoes
MIN_BASELINE = 3  # below this many earlier sessions only the floors judge
_NAMESPACE = uuid.UUID("6f1d3c0e-8a53-4f5e-9d4b-2f6c1e0a7b18")


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    object_name: str
    count: int
    baseline_mean: float = 0.0
    baseline_stddev: float = 0.0
    baseline_sessions: int = 0
    object_records: int = 0
    message: str = ""
    draft_session_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            kind=str(data.get("kind", "")),
            object_name=str(data.get("object_name", "")),
            count=int(data.get("count", 0)),
            baseline_mean=float(data.get("baseline_mean", 0.0)),
            baseline_stddev=float(data.get("baseline_stddev", 0.0)),
            baseline_sessions=int(data.get("baseline_sessions", 0)),
            object_records=int(data.get("object_records", 0)),
            message=str(data.get("message", "")),
            draft_session_id=str(data.get("draft_session_id", "")),
        )


@dataclass(frozen=True, slots=True)
class PastSession:
    """An earlier finished backup of the policy: its per-object counts."""

    session_id: str
    finished_at: dt.datetime | None
    initial: bool
    objects: Mapping[str, Counts]


@dataclass(frozen=True, slots=True)
class History:
    """What the judgement needs of the policy's earlier backups."""

    sessions: tuple[PastSession, ...] = ()  # Success or Warning, newest first (at most the baseline's length)
    records: Mapping[str, int] = dataclasses.field(default_factory=dict)  # per object: new versions - deleted

    @property
    def previous_finished_at(self) -> dt.datetime | None:
        """When the last earlier backup finished: a restore draft's point in time."""
        return self.sessions[0].finished_at if self.sessions else None


# (finding kind, Counts field, the settings' percentage floor, the verb of its message)
_MEASURES: tuple[tuple[str, str, str, str], ...] = (
    (MASS_DELETE, "deleted", "delete_pct", "deleted"),
    (MASS_CHANGE, "changed", "change_pct", "changed"),
    (MASS_CREATE, "new_versions", "create_pct", "created"),
)


def _mean_stddev(values: Sequence[int]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / len(values)
    return mean, math.sqrt(variance)


def judge(session_id: str, current: Mapping[str, Counts], history: History, settings: AnomalySettings) -> list[Finding]:
    """The findings of a (non-initial) backup session whose per-object counts are `current`, judged by the
    policy's settings (their zero values the defaults)."""
    if settings.disabled:
        return []
    settings = settings.with_defaults()
    baseline_of = [p for p in history.sessions if not p.initial][: settings.baseline_sessions]
    findings: list[Finding] = []
    for object_name in sorted(current):
        counts = current[object_name]
        records = max(history.records.get(object_name, 0), 0)
        seen_before = object_name in history.records or any(object_name in p.objects for p in history.sessions)
        if not seen_before:
            continue  # the object's first backup in this policy: a full read, never judged
        for kind, field, pct_name, verb in _MEASURES:
            count = int(getattr(counts, field))
            if count <= 0 or count < settings.min_records:
                continue
            pct: float = getattr(settings, pct_name)
            if records > 0 and count * 100 < pct * records:
                continue
            values = [int(getattr(p.objects[object_name], field)) for p in baseline_of if object_name in p.objects]
            mean, stddev = _mean_stddev(values)
            if len(values) >= MIN_BASELINE and count <= mean + settings.sigma * stddev:
                continue
            share = f" ({count * 100 / records:.1f} % of {records:,})" if records else ""
            baseline = (
                f"baseline {mean:,.1f} ± {stddev:,.1f} over {len(values)} sessions"
                if values
                else "no baseline sessions yet"
            )
            judged_by = "" if len(values) >= MIN_BASELINE else "; judged by the floors alone"
            finding = Finding(
                kind=kind,
                object_name=object_name,
                count=count,
                baseline_mean=mean,
                baseline_stddev=stddev,
                baseline_sessions=len(values),
                object_records=records,
                message=f"{object_name}: {count:,} records {verb}{share}, {baseline}{judged_by}",
            )
            if kind in DRAFTED and history.previous_finished_at is not None:
                finding = dataclasses.replace(finding, draft_session_id=draft_session_id(session_id, finding))
            findings.append(finding)
    return findings


# the jobrunner's words when an incremental's count of an object still disagrees with the backup's (jobrunner
# deletes.count_disagreement): "count check of <Object>: <n> records in the org, <m> in the backup..."
_COUNT_CHECK = re.compile(r"count check of ([A-Za-z][A-Za-z0-9_]*): (\d+) records in the org, (\d+) in the backup[^;]*")


def count_findings(job_messages: Mapping[str, str]) -> list[Finding]:
    """A backup says Success only when every object's count agrees: each data job (object -> its message) whose
    count check still disagreed is a `count_mismatch` finding naming the object, both counts and why."""
    findings: list[Finding] = []
    for _object_name, message in sorted(job_messages.items()):
        for m in _COUNT_CHECK.finditer(message):
            org, backup = int(m.group(2)), int(m.group(3))
            findings.append(
                Finding(
                    kind="count_mismatch",
                    object_name=m.group(1),
                    count=abs(org - backup),
                    object_records=backup,
                    message=m.group(0),
                )
            )
    return findings


def draft_session_id(session_id: str, finding: Finding) -> str:
    """The restore draft's session id: the same for the same session, kind and object, whatever happens."""
    return "draft-" + uuid.uuid5(_NAMESPACE, f"{session_id}/{finding.kind}/{finding.object_name}").hex


def summary(findings: Sequence[Finding]) -> str:
    """The reason's part that names them."""
    anomalies = [f.message for f in findings if f.kind != "count_mismatch"]
    counts = [f.message for f in findings if f.kind == "count_mismatch"]
    parts = []
    if anomalies:
        parts.append("anomal" + ("y" if len(anomalies) == 1 else "ies") + ": " + "; ".join(anomalies))
    if counts:
        parts.append("counts disagree: " + "; ".join(counts))
    return "; ".join(parts)
