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
