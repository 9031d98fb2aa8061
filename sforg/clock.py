"""The org's clock (real time, or set/advanced by tests) and Salesforce's timestamp renderings."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time

UTC = dt.UTC


class Clock:
    """Real time plus an offset, or a frozen instant; both settable from the admin API."""

    def __init__(self, offset: float = 0.0, frozen: float | None = None) -> None:
        self._lock = threading.Lock()
        self.offset = offset
        self.frozen = frozen

    def now(self) -> float:
        with self._lock:
            return self.frozen if self.frozen is not None else time.time() + self.offset

    def set(self, epoch: float, freeze: bool = False) -> None:
        with self._lock:
            if freeze:
                self.frozen = epoch
            else:
                self.frozen = None
                self.offset = epoch - time.time()

    def advance(self, seconds: float) -> None:
        with self._lock:
            if self.frozen is not None:
                self.frozen += seconds
            else:
                self.offset += seconds

    def reset(self) -> None:
        with self._lock:
            self.frozen, self.offset = None, 0.0


# Stored form of datetimes: sortable text with milliseconds and a Z, the Bulk CSV rendering.
def stamp(epoch: float) -> str:
    """Canonical stored datetime text, e.g. 2024-01-01T10:00:00.000Z."""
    t = dt.datetime.fromtimestamp(epoch, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def rest_datetime(stored: str) -> str:
    """REST JSON renders datetimes with +0000 (no colon)."""
    return stored[:-1] + "+0000"


def parse_epoch(stored: str) -> float:
    return parse_datetime(stored).timestamp()


_DT_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_datetime(text: str) -> dt.datetime:
    """Parse the datetime forms clients send (Z, +00:00, +0000, with or without millis); naive = UTC."""
    m = _DT_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a datetime: {text!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    micro = int((frac or "0").ljust(6, "0")[:6])
    out = dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micro, tzinfo=UTC)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        out -= sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return out


def to_stamp(text: str) -> str:
    return stamp(parse_datetime(text).timestamp())


def iso_date(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def http_date(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
