"""A policy's anomaly settings, sfvault.protect.v1.AnomalySettings, as one type: discovery keeps them as the policy
says them, the session judges a backup by them with the defaults applied. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AnomalySettings:
    """As the policy says them: a zero value is the default (ANOMALY_DEFAULTS, see `with_defaults`)."""

    disabled: bool = False
    sigma: float = 0.0
    baseline_sessions: int = 0
    min_records: int = 0
    delete_pct: float = 0.0
    change_pct: float = 0.0
    create_pct: float = 0.0

    def with_defaults(self) -> AnomalySettings:
        """The settings a backup is judged by: each zero value replaced by its default."""
        return AnomalySettings(**{name: getattr(self, name) or getattr(ANOMALY_DEFAULTS, name) for name in _FIELDS})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnomalySettings:
        """From the message's JSON form (proto field names); a missing value is zero (the default)."""
        return cls(**{name: type(getattr(_ZERO, name))(data.get(name) or 0) for name in _FIELDS})


ANOMALY_DEFAULTS = AnomalySettings(
    sigma=3.0, baseline_sessions=30, min_records=100, delete_pct=10.0, change_pct=50.0, create_pct=50.0
)
_ZERO = AnomalySettings()
_FIELDS = tuple(f.name for f in dataclasses.fields(AnomalySettings))
