"""Datetimes <-> google.protobuf.Timestamp (and timedeltas -> Duration): the one conversion every service's
translation and the CLI use."""

from __future__ import annotations

import datetime as dt
from typing import overload

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp


@overload
def to_pb(value: dt.datetime | float) -> Timestamp: ...
@overload
def to_pb(value: None) -> None: ...
@overload
def to_pb(value: dt.datetime | float | None) -> Timestamp | None: ...
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


def duration_to_pb(value: dt.timedelta) -> Duration:
    out = Duration()
    out.FromTimedelta(value)
    return out
