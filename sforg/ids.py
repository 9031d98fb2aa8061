"""Salesforce record Ids: 15-character base62 bodies with the 3-character case-safe checksum suffix."""

from __future__ import annotations

import functools

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_CHARS = frozenset(BASE62)


@functools.lru_cache(maxsize=1 << 16)
def checksum(id15: str) -> str:
    """The 3 suffix characters Salesforce appends so an Id survives case-insensitive systems."""
    out = []
    for chunk in range(3):
        bits = 0
        for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        out.append(_SUFFIX[bits])
    return "".join(out)


def make_id(prefix: str, counter: int, pod: str = "8d") -> str:
    """An 18-character Id: key prefix, pod, a reserved '0', a 9-digit base62 counter, checksum."""
    digits = []
    n = counter
    for _ in range(9):
        n, r = divmod(n, 62)
        digits.append(BASE62[r])
    body = prefix + pod + "0" + "".join(reversed(digits))
    return body + checksum(body)


def counter_of(record_id: str) -> int:
    """The counter `make_id` made an Id from (its nine base62 digits after the prefix, the pod and the '0')."""
    n = 0
    for ch in record_id[6:15]:
        n = n * 62 + BASE62.index(ch)
    return n


def is_valid(record_id: str) -> bool:
    """True for a well-formed 15- or 18-character Id (checksum verified when present)."""
    n = len(record_id)
    # ASCII letters and digits: base62 (what _CHARS holds), tested in C
    if (n != 15 and n != 18) or not (record_id.isascii() and record_id.isalnum()):
        return False
    return n == 15 or checksum(record_id[:15]) == record_id[15:]


def to18(record_id: str) -> str:
    """Normalise a 15-character Id to its 18-character form."""
    return record_id if len(record_id) == 18 else record_id + checksum(record_id)
