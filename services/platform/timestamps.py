"""Datetimes <-> google.protobuf.Timestamp: the one conversion every service's translation uses."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp


def to_pb(value: dt.datetime | float | None) -> Timestamp | None:
    """A Timestamp of a datetime (or of seconds since the epoch); None stays None, so a message built with it
    leaves the field unset."""
    if value is None:
        return None
    stamp = Timestamp()
    if isinstance(value, dt.datetime):
        stamp.FromDatetime(value)
    else:
        stamp.FromNanoseconds(int(value * 1e9))
    return stamp


def from_pb(msg: object, field: str) -> dt.datetime | None:
    """The UTC datetime of a message's Timestamp field, None when it is unset."""
    if not msg.HasField(field):  # type: ignore[attr-defined]
        return None
    stamp: Timestamp = getattr(msg, field)
    return stamp.ToDatetime(tzinfo=dt.UTC)
