"""Parameter objects of the admin calls with many arguments: `Org` takes them, `testing.Admin` builds them from its
keyword arguments (so a misspelt one fails in the test, not in the server) and sends them as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RecordUpdate:
    """Which records an admin update changes and how: N of them (or a fraction, or the given Ids), to the given
    values or with random changes (to the given fields); same_modstamp gives every one the same SystemModstamp;
    seed picks the records and the changes."""

    n: int | None = None
    fraction: float | None = None
    ids: list[str] | None = None
    values: dict[str, Any] | None = None
    fields: list[str] | None = None
    same_modstamp: bool = False
    seed: int | None = None


@dataclass(frozen=True)
class Fault:
    """A fault armed on an endpoint name (see README) or '*': errors at a rate, added latency, a hang, headers
    then stall_after bytes then nothing; count limits it to the next N requests."""

    endpoint: str = "*"
    error_rate: float = 0.0
    error: str = "SERVER_UNAVAILABLE"
    latency: float = 0.0
    hang: bool = False
    stall_after: int | None = None
    count: int | None = None
