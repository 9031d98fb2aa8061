"""Compare (issue 18), the pure rules: what a change between two states of a record is, field by field, and the
checks of a CompareAsOf request. No I/O: the store finds the records whose state differs (store_compare.py), the
application reads their values and asks these rules which fields changed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.canonical import check_api_name
from services.platform.errors import InvalidArgument

DEFAULT_COMPARE_BATCH, MAX_COMPARE_BATCH = 1_000, 10_000
ADDED, DELETED, CHANGED = "added", "deleted", "changed"

_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def value_json(value: Any) -> bytes:
    """The canonical JSON of one value (b"" for a value absent: null or empty, which Salesforce does not tell apart)."""
    return b"" if value is None else _encode(value).encode()


@dataclass(frozen=True)
class FieldChange:
    field: str
    old_json: bytes = b""  # canonical JSON of the value (only when values are asked for)
    new_json: bytes = b""


@dataclass(frozen=True)
class RecordChange:
    object_name: str
    record_id: str
    change: str  # added | deleted | changed
    fields: tuple[FieldChange, ...] = ()


@dataclass
class ObjectSummary:
    object_name: str
    added: int = 0
    deleted: int = 0
    changed: int = 0

    def count(self, change: str) -> None:
        setattr(self, change, getattr(self, change) + 1)


@dataclass
class ComparePiece:
    """One piece of a compare's stream: changes; the last piece also the per-object summaries."""

    changes: list[RecordChange] = field(default_factory=list)
    summaries: list[ObjectSummary] | None = None
    truncated: bool = False


def changed_fields(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    comparable: Collection[str],
    *,
    only: Collection[str] | None = None,
    values: bool = False,
) -> tuple[FieldChange, ...]:
    """The fields whose value differs between two versions of a record, in name order.

    `comparable`: the fields that count for a change at both points (hashed at both: no audit field, no formula
    field unless formula changes are counted, and no field that was not in the backup's scope at one of the two
    points -- its value there is unknown, not empty). `only`: the fields filter (None: every comparable one).
    A value absent (null or empty) differs from any present value."""
    names = comparable if only is None else [f for f in only if f in comparable]
    out = []
    for name in sorted(names):
        a, b = old.get(name), new.get(name)
        if a != b or type(a) is not type(b):
            out.append(FieldChange(name, value_json(a), value_json(b)) if values else FieldChange(name))
    return tuple(out)


def check_window(
    since: dt.datetime | None, until: dt.datetime | None, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """(from, to) of a compare: `from` required, `to` unset is now; `to` before `from` is refused."""
    if since is None:
        raise InvalidArgument("from is required: the backup's point to compare from")
    to = until or now
    if to < since:
        raise InvalidArgument(f"to ({to.isoformat()}) is before from ({since.isoformat()})")
    return since, to


def check_page(batch_size: int, limit: int) -> int:
    """The batch size of a compare (0: the default); a negative limit or a batch size out of range is refused."""
    if batch_size < 0 or batch_size > MAX_COMPARE_BATCH:
        raise InvalidArgument(f"batch_size must be between 0 and {MAX_COMPARE_BATCH} (0: {DEFAULT_COMPARE_BATCH})")
    if limit < 0:
        raise InvalidArgument(f"limit must be 0 (no limit) or more, got {limit}")
    return batch_size or DEFAULT_COMPARE_BATCH


def check_names(names: Iterable[str], what: str) -> list[str]:
    """API names checked, duplicates (case-insensitively) dropped, in the order given."""
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        check_api_name(name, what)
        if name.lower() not in seen:
            seen.add(name.lower())
            out.append(name)
    return out


def resolve_fields(fields: Sequence[str], known: Collection[str]) -> list[str]:
    """The fields filter in the schemas' spelling (names are case-insensitive); a field of none of the compared
    objects' schemas is refused, naming it."""
    by_lower = {k.lower(): k for k in known}
    out = []
    for f in fields:
        spelled = by_lower.get(f.lower())
        if spelled is None:
            raise InvalidArgument(f"field {f} is not a field of any compared object (at either point)")
        out.append(spelled)
    return out
