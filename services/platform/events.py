"""Event envelopes: deterministic ids, subjects, and (de)serialisation of sfvault.events.v1.

An event id names the fact, not the publication: publishing the same fact twice yields the same id, which
JetStream de-duplicates (Nats-Msg-Id) and every consumer's tracking table recognises.
"""

from __future__ import annotations

import datetime as dt
import re

from google.protobuf.message import DecodeError, Message
from sfvault.events.v1 import events_pb2
from sfvault.restore.v1 import restore_pb2

from services.platform.counts import FIELDS as COUNT_FIELDS
from services.platform.counts import RESTORE_FIELDS, Counts, RestoreCounts

SCHEMA_VERSION = 1
EVENTS_SUBJECT_ROOT = "sfvault.events"

_PAYLOAD_FIELDS = {
    field.message_type.name: field.name
    for field in events_pb2.Envelope.DESCRIPTOR.oneofs_by_name["payload"].fields
    if field.message_type is not None
}
# an id is one subject token; its length bounded so no subject can pass the NATS control-line limit (4 KiB:
# a longer one makes the server close the connection)
MAX_TOKEN_LENGTH = 200
_TOKEN = re.compile(rf"[A-Za-z0-9_\-]{{1,{MAX_TOKEN_LENGTH}}}")


class MalformedEvent(ValueError):
    """A message that is not a valid sfvault event (it goes to the dead-letter subject)."""


def event_types() -> list[str]:
    return sorted(_PAYLOAD_FIELDS)


def check_token(name: str, value: str) -> str:
    """Ids become subject tokens: no dots, wildcards or spaces, and at most MAX_TOKEN_LENGTH characters."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        shown = repr(value[:40]) + ("…" if len(value) > 40 else "") if isinstance(value, str) else repr(value)
        raise ValueError(f"{name} {shown} must be 1-{MAX_TOKEN_LENGTH} characters, only letters, digits, '_' and '-'")
    return value


def event_id(kind: str, session_id: str, job_id: str = "", *parts: object) -> str:
    """The deterministic id of a fact: e.g. ChunkUploaded of chunk 7 of job J of session S."""
    return ":".join([kind, session_id, job_id, *(str(p) for p in parts)])


def envelope(
    payload: Message,
    *,
    session_id: str,
    producer: str,
    job_id: str = "",
    event_id_: str | None = None,
    id_parts: tuple[object, ...] = (),
    occurred_at: dt.datetime | None = None,
) -> events_pb2.Envelope:
    kind = type(payload).DESCRIPTOR.name
    field = _PAYLOAD_FIELDS.get(kind)
    if field is None:
        raise TypeError(f"{kind} is not an sfvault event payload")
    check_token("session_id", session_id)
    if job_id:
        check_token("job_id", job_id)
    env = events_pb2.Envelope(
        event_id=event_id_ or event_id(kind, session_id, job_id, *id_parts),
        session_id=session_id,
        job_id=job_id,
        schema_version=SCHEMA_VERSION,
        producer=producer,
    )
    env.occurred_at.FromDatetime(occurred_at or dt.datetime.now(dt.UTC))
    getattr(env, field).CopyFrom(payload)
    return env


def event_type(env: events_pb2.Envelope) -> str:
    field = env.WhichOneof("payload")
    if field is None:
        raise MalformedEvent(f"event {env.event_id!r} has no payload")
    return type(getattr(env, field)).DESCRIPTOR.name


def payload(env: events_pb2.Envelope) -> Message:
    field = env.WhichOneof("payload")
    if field is None:
        raise MalformedEvent(f"event {env.event_id!r} has no payload")
    return getattr(env, field)


def subject(env: events_pb2.Envelope, namespace: str = "") -> str:
    check_token("session_id", env.session_id)
    return f"{namespace}{EVENTS_SUBJECT_ROOT}.{env.session_id}.{event_type(env)}"


def occurred_at(env: events_pb2.Envelope) -> dt.datetime:
    return env.occurred_at.ToDatetime(tzinfo=dt.UTC)


def decode(data: bytes) -> events_pb2.Envelope:
    env = events_pb2.Envelope()
    try:
        env.ParseFromString(data)
    except DecodeError as exc:
        raise MalformedEvent(f"not an Envelope: {exc}") from exc
    if not env.event_id or not env.session_id:
        raise MalformedEvent("event without event_id or session_id")
    try:
        check_token("session_id", env.session_id)
        if env.job_id:
            check_token("job_id", env.job_id)
    except ValueError as exc:
        raise MalformedEvent(str(exc)) from None
    if env.schema_version > SCHEMA_VERSION:
        raise MalformedEvent(f"schema version {env.schema_version} is newer than this service understands")
    event_type(env)
    return env


def counts_to_pb(counts: Counts) -> events_pb2.Counts:
    return events_pb2.Counts(**counts.to_json())


def counts_from_pb(msg: events_pb2.Counts) -> Counts:
    return Counts(*(getattr(msg, f) for f in COUNT_FIELDS))


def restore_counts_to_pb(counts: RestoreCounts, object_name: str = "") -> restore_pb2.ObjectRestoreCounts:
    """As restore.v1.ObjectRestoreCounts; `object_name` names counts kept without one."""
    return restore_pb2.ObjectRestoreCounts(
        object_name=object_name or counts.object_name, **{f: getattr(counts, f) for f in RESTORE_FIELDS}
    )


def restore_counts_from_pb(msg: restore_pb2.ObjectRestoreCounts, *, named: bool = True) -> RestoreCounts:
    """From restore.v1.ObjectRestoreCounts; `named=False` leaves object_name empty (counts kept by their name)."""
    return RestoreCounts(msg.object_name if named else "", *(getattr(msg, f) for f in RESTORE_FIELDS))
