"""`sfvault records restore-points OBJECT ID`: the points a record can be read (or restored) at, pure.

A record's restore points are its backed-up versions: each one's capture time is the `--at` / `--as-of` that
reads the record as that version, with the session that stored it, its deleted state and the fields that
changed since the version before (values are never shown: only field names)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sfvault.storage.v1 import storage_pb2 as st

COLUMNS = ("--at (restore point)", "session", "state", "changed fields")


def deleted_name(state: Any) -> str:
    return "live" if not state else str(st.DeletedState.Name(state)).removeprefix("DELETED_STATE_").lower()


def iso(value: Any) -> str:
    """A protobuf Timestamp as ISO 8601 in UTC (the form --at takes back)."""
    return str(value.ToDatetime().isoformat(timespec="microseconds")) + "Z"


def changed_fields(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """The fields whose value differs between two versions' values (every field of a first version)."""
    if before is None:
        return sorted(after)
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def restore_points(versions: Sequence[st.RecordVersion]) -> list[dict[str, Any]]:
    """A point per version (oldest first, as GetRecordHistory answers), newest first."""
    points: list[dict[str, Any]] = []
    before: dict[str, Any] | None = None
    for v in versions:
        values = json.loads(v.values_json or b"{}")
        changed = changed_fields(before, values)
        points.append(
            {
                "at": iso(v.captured_at),
                "session_id": v.session_id,
                "version_id": v.version_id,
                "state": deleted_name(v.deleted),
                "changed_fields": ["(first backup)"] if before is None else changed,
            }
        )
        before = values
    return points[::-1]


def row(point: dict[str, Any], width: int = 6) -> tuple[str, ...]:
    """A table row: the changed fields' names, at most `width` of them then a count of the rest."""
    fields = point["changed_fields"]
    shown = ", ".join(fields[:width]) + (f" (+{len(fields) - width})" if len(fields) > width else "")
    return (point["at"], point["session_id"][:12], point["state"], shown or "-")
