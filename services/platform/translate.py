"""Protobuf <-> domain where a message and a dataclass name their fields alike: the fields are copied by name,
only those converted otherwise (or named otherwise) are written out. Every service's translate.py uses it."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from services.platform import timestamps

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    D = TypeVar("D", bound=DataclassInstance)

M = TypeVar("M", bound=Message)


def to_message(message_type: type[M], source: object, **given: Any) -> M:
    """A `message_type` whose every field is `source`'s attribute of the same name (a Timestamp field from its
    datetime, through timestamps.to_pb), but for the fields in `given`. Driven by the message's fields: an
    attribute the message does not carry is never copied, a field `source` lacks is an AttributeError."""
    fields = message_type.DESCRIPTOR.fields  # type: ignore[attr-defined]
    copied = {f.name: _value(f, getattr(source, f.name)) for f in fields if f.name not in given}
    return message_type(**copied, **given)


def from_message(cls: type[D], message: Message, **given: Any) -> D:
    """A dataclass whose every field is the message's field of the same name, but for those in `given`."""
    return cls(**{f.name: getattr(message, f.name) for f in dataclasses.fields(cls) if f.name not in given}, **given)


def _value(field: Any, value: Any) -> Any:
    if field.message_type is not None and field.message_type.full_name == Timestamp.DESCRIPTOR.full_name:
        return timestamps.to_pb(value)
    return value
