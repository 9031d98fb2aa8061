"""What a chunk, a job or a session counted: the one Counts every service's domain and events share.

Pure (no protobuf here: services/platform/events.py converts it to and from sfvault.events.v1.Counts).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Counts:
    received: int = 0
    new_versions: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    bytes: int = 0
    files: int = 0
    api_calls: int = 0
    metadata_components: int = 0

    def __add__(self, other: Counts) -> Counts:
        if other is ZERO:
            return self
        return Counts(*(getattr(self, f) + getattr(other, f) for f in FIELDS))

    def max(self, other: Counts) -> Counts:
        if other is ZERO:
            return self
        return Counts(*(max(getattr(self, f), getattr(other, f)) for f in FIELDS))

    @property
    def restore_points(self) -> int:
        return self.new_versions + self.changed + self.deleted

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> Counts:
        """From its JSON object (or text); a field it lacks is 0, a field it does not know is ignored."""
        values = data if isinstance(data, Mapping) else json.loads(data)
        return cls(**{f: int(values.get(f, 0)) for f in FIELDS})


ZERO = Counts()
FIELDS = tuple(f.name for f in dataclasses.fields(Counts))


@dataclass(frozen=True, slots=True)
class RestoreCounts:
    """What a restore did (or, in a dry run, would do) to the records of one object (restore.v1.ObjectRestoreCounts):
    records per state, fields left out, file bodies and Salesforce write calls. `object_name` is empty where the
    counts are kept by their object's name (a session's)."""

    object_name: str = ""
    created: int = 0
    updated: int = 0
    undeleted: int = 0
    skipped: int = 0
    failed: int = 0
    fields_left_out: int = 0
    files: int = 0
    write_calls: int = 0

    def __add__(self, other: RestoreCounts) -> RestoreCounts:
        return RestoreCounts(
            self.object_name or other.object_name, *(getattr(self, f) + getattr(other, f) for f in RESTORE_FIELDS)
        )

    def max(self, other: RestoreCounts) -> RestoreCounts:
        return RestoreCounts(
            self.object_name or other.object_name, *(max(getattr(self, f), getattr(other, f)) for f in RESTORE_FIELDS)
        )

    def to_json(self) -> dict[str, Any]:
        """Its JSON object; `object_name` only when it has one."""
        data: dict[str, Any] = {"object_name": self.object_name} if self.object_name else {}
        return data | {f: getattr(self, f) for f in RESTORE_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RestoreCounts:
        """From its JSON object; a field it lacks is 0 (or empty), a field it does not know is ignored."""
        return cls(str(data.get("object_name", "")), *(int(data.get(f, 0)) for f in RESTORE_FIELDS))


RESTORE_FIELDS = tuple(f.name for f in dataclasses.fields(RestoreCounts) if f.name != "object_name")
