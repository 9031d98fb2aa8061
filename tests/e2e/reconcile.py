"""Reconcile a backup (storage's export as of now) against sforg's ground truth: per object, the live
records the backup is missing, those whose backed-up values are stale, and phantoms it has that the org
does not. Values compare by meaning, not formatting (1 == 1.0, "…000+0000" == "…Z")."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sfvault.storage.v1 import storage_pb2, storage_pb2_grpc


def _as_datetime(value: str) -> dt.datetime | None:
    text = value.strip()
    if len(text) < 10 or text[4] != "-":
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():  # Salesforce's +0000
            try:
                parsed = dt.datetime.fromisoformat(text[:-5] + text[-5:-2] + ":" + text[-2:])
            except ValueError:
                return None
        else:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def same(a: Any, b: Any) -> bool:
    """Equal in meaning: null == "" == absent, numbers by value, date-times by instant, objects key-wise."""
    if a in (None, "") and b in (None, ""):
        return True
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)):
            return False
        keys = (set(a) | set(b)) - {"attributes"}
        return all(same(a.get(k), b.get(k)) for k in keys)
    if isinstance(a, bool) or isinstance(b, bool):
        return str(a).lower() == str(b).lower()
    if isinstance(a, int | float) or isinstance(b, int | float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    if isinstance(a, str) and isinstance(b, str):
        if a == b:
            return True
        da, db = _as_datetime(a), _as_datetime(b)
        return da is not None and db is not None and da == db
    return bool(a == b)


@dataclass
class ObjectReport:
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    phantom: list[str] = field(default_factory=list)
    stale_fields: dict[str, list[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.stale or self.phantom)


@dataclass
class Report:
    objects: dict[str, ObjectReport]

    def totals(self) -> tuple[int, int, int]:
        return (
            sum(len(r.missing) for r in self.objects.values()),
            sum(len(r.stale) for r in self.objects.values()),
            sum(len(r.phantom) for r in self.objects.values()),
        )

    def summary(self) -> str:
        lines = [f"missing {self.totals()[0]}, stale {self.totals()[1]}, phantom {self.totals()[2]}"]
        for name, r in sorted(self.objects.items()):
            if not r.clean:
                fields = sorted({f for fs in r.stale_fields.values() for f in fs})
                lines.append(
                    f"  {name}: missing {len(r.missing)} {r.missing[:3]}, stale {len(r.stale)} {r.stale[:3]}"
                    f" (fields {fields[:8]}), phantom {len(r.phantom)} {r.phantom[:3]}"
                )
        return "\n".join(lines)


def export_live(stub: storage_pb2_grpc.StorageServiceStub, org_id: str, object_name: str) -> dict[str, dict[str, Any]]:
    request = storage_pb2.ExportObjectAsOfRequest(
        org_id=org_id, object_name=object_name, format=storage_pb2.EXPORT_FORMAT_JSONL
    )
    buffer = b"".join(chunk.data for chunk in stub.ExportObjectAsOf(request))
    records: dict[str, dict[str, Any]] = {}
    for line in buffer.splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["Id"]] = record
    return records


def compare_object(org_live: dict[str, dict[str, Any]], backup_live: dict[str, dict[str, Any]]) -> ObjectReport:
    report = ObjectReport()
    for rid, values in org_live.items():
        stored = backup_live.get(rid)
        if stored is None:
            report.missing.append(rid)
            continue
        differing = [k for k, v in stored.items() if not k.startswith("_") and k in values and not same(values[k], v)]
        if differing:
            report.stale.append(rid)
            report.stale_fields[rid] = differing
    report.phantom = [rid for rid in backup_live if rid not in org_live]
    return report


def reconcile(
    stub: storage_pb2_grpc.StorageServiceStub,
    org_id: str,
    truth: dict[str, Any],
    objects: list[str],
) -> Report:
    return Report(
        {name: compare_object(truth["objects"].get(name, {}), export_live(stub, org_id, name)) for name in objects}
    )
