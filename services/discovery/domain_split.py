"""One large object split into Id ranges, each its own data job (issue 21), so several jobrunner replicas read
it at once: as Salesforce's PK chunking does, [lowest Id, highest Id] cut into ranges of equal width in Id
numbers (an Id's 15-character body read as a base62 number: the nine-digit counter after the key prefix and the
pod). The first range is open at the bottom and the last at the top (`""`), so a record created later always
falls in a range. A split is decided once per policy and object and kept: each range's marks stay valid in every
later session; only the open top range is cut further when the object outgrows it.

Pure functions: the Ids and counts come from the caller.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from services.canonical import id_suffix

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # in ASCII order: Ids sort as numbers
ID_BODY = 15
# the open top range is cut again once it holds (by the org's approximate count) this many times the split size
TOP_GROWTH = 2


@dataclass(frozen=True)
class IdRange:
    """Ids with id_from <= Id < id_to (18-character Ids compared as strings); "" leaves that side open."""

    id_from: str = ""
    id_to: str = ""

    def holds(self, record_id: str) -> bool:
        """What the jobrunner's range filter keeps (object_read.in_range), and Salesforce's `Id >= .. AND Id < ..`."""
        return (not self.id_from or record_id >= self.id_from) and (not self.id_to or record_id < self.id_to)


WHOLE = (IdRange(),)


def id_number(record_id: str) -> int:
    """An Id's 15-character body as a base62 number (the 18-character suffix is a checksum of it)."""
    n = 0
    for ch in record_id[:ID_BODY]:
        n = n * 62 + BASE62.index(ch)
    return n


def id_of(number: int) -> str:
    """The 18-character Id whose body is `number` (the bound of a range: no record need have it)."""
    digits = []
    for _ in range(ID_BODY):
        number, r = divmod(number, 62)
        digits.append(BASE62[r])
    body = "".join(reversed(digits))
    return body + id_suffix(body)


def parts_for(count: int, split_records: int) -> int:
    """How many ranges an object of `count` records needs at `split_records` each (1: not split)."""
    if split_records <= 0 or count <= split_records:
        return 1
    return -(-count // split_records)


def inner_bounds(lowest: str, highest: str, parts: int) -> list[str]:
    """`parts - 1` Ids cutting [lowest, highest] into `parts` ranges of equal width in Id numbers (fewer when the
    span holds fewer Ids than parts); each bound above `lowest` and at most `highest`, strictly increasing."""
    lo, hi = id_number(lowest), id_number(highest)
    span = hi - lo + 1
    parts = min(parts, span)
    return [id_of(lo + span * i // parts) for i in range(1, parts)]


def ranges_of(bounds: Sequence[str], bottom: str = "") -> tuple[IdRange, ...]:
    """The ranges between consecutive bounds, from `bottom` ("": open) to an open top."""
    edges = [bottom, *bounds, ""]
    return tuple(IdRange(a, b) for a, b in itertools.pairwise(edges))


def split_ranges(count: int, lowest: str, highest: str, split_records: int) -> tuple[IdRange, ...]:
    """An object's first split: `count` records (the org's approximate count) between its lowest and highest Id,
    in ranges of about `split_records` (assuming Ids spread evenly, as PK chunking does). WHOLE when it needs no
    split (or has no records: lowest or highest empty)."""
    parts = parts_for(count, split_records)
    if parts == 1 or not lowest or not highest or highest <= lowest:
        return WHOLE
    return ranges_of(inner_bounds(lowest, highest, parts))


def top_parts(ranges: Sequence[IdRange], count: int, split_records: int) -> int:
    """How many ranges the open top range should become (0: it stays): the records above the kept ranges (the
    count less split_records for each range below the top) once they reach TOP_GROWTH times the split size. New
    records have the highest Ids, so a growing object grows its top range only."""
    if len(ranges) < 2 or split_records <= 0:
        return 0  # WHOLE: an object never split is split by split_ranges, from its lowest Id
    above = count - (len(ranges) - 1) * split_records
    if above < TOP_GROWTH * split_records:
        return 0
    return parts_for(above, split_records)


def split_top(ranges: Sequence[IdRange], highest: str, parts: int) -> tuple[IdRange, ...]:
    """The ranges with the open top one cut into `parts` between its start and the highest Id now; the ranges
    below are kept as they were (their marks stay valid). Unchanged when there is nothing above its start."""
    top = ranges[-1]
    if parts < 2 or not highest or highest <= top.id_from:
        return tuple(ranges)
    return (*ranges[:-1], *ranges_of(inner_bounds(top.id_from, highest, parts), top.id_from))


def bounds_of(ranges: Sequence[IdRange]) -> list[str]:
    """The inner bounds a split is kept as (ranges_of gives the ranges back)."""
    return [r.id_to for r in ranges[:-1]]


def range_job_id(object_name: str, index: int, ranges: int) -> str:
    """`data-<Object>` for an object read whole; `data-<Object>-<n>` (1 = the lowest Ids) for one range of a
    split (an API name has no '-')."""
    return f"data-{object_name}" if ranges == 1 else f"data-{object_name}-{index + 1}"


def completed_objects(jobs: Iterable[tuple[str, str]], done: set[str]) -> set[str]:
    """The objects whose every data job of a session completed, from (job id, object) pairs: an object split in
    ranges completed only when all of its ranges did."""
    by_object: dict[str, set[str]] = {}
    for job_id, object_name in jobs:
        by_object.setdefault(object_name, set()).add(job_id)
    return {name for name, ids in by_object.items() if ids <= done}


def expected_per_range(counts: Mapping[str, int], name: str, ranges: int) -> int:
    """An approximate record count of one range (the object's count shared equally)."""
    return -(-max(counts.get(name, 0), 0) // ranges)
