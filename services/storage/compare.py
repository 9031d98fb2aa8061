"""Compare (issue 18), the pure checks of a CompareAsOf request. No I/O: the store finds the records whose state
differs (store_compare.py), the application reads their values and asks services.canonical (changed_fields, and
the model of a compare's stream: RecordChange, ObjectSummary, ComparePiece) which fields changed; the stream's
protobuf form is services.platform.compare's, shared with discovery's CompareLive.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence

from services.canonical import check_api_name
from services.platform.errors import InvalidArgument

DEFAULT_COMPARE_BATCH, MAX_COMPARE_BATCH = 1_000, 10_000
ADDED, DELETED, CHANGED = "added", "deleted", "changed"


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
