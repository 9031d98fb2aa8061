"""Event envelopes: an id that is not one short subject token never reaches NATS (a subject over the server's
4 KiB control line closes the connection: `nats: connection closed`)."""

from __future__ import annotations

import pytest
from sfvault.events.v1 import events_pb2

from services.platform import events


def test_a_long_or_dotted_id_is_refused_before_a_subject_is_built() -> None:
    ok = events.envelope(events_pb2.SessionRequested(policy_id="p"), session_id="s" * 200, producer="t")
    assert events.subject(ok) == f"sfvault.events.{'s' * 200}.SessionRequested"
    for bad in ("s" * 5000, "a.b", "a b", "*", ">", "", "é"):
        with pytest.raises(ValueError, match="session_id"):
            events.envelope(events_pb2.SessionRequested(policy_id="p"), session_id=bad, producer="t")
    with pytest.raises(ValueError, match="job_id"):
        events.envelope(events_pb2.JobStarted(), session_id="s", job_id="j" * 201, producer="t")
    forged = events_pb2.Envelope(event_id="e", session_id="x" * 5000)
    with pytest.raises(ValueError, match="1-200 characters"):
        events.subject(forged)


def test_the_message_does_not_quote_a_long_id_whole() -> None:
    with pytest.raises(ValueError) as refused:
        events.check_token("session_id", "x" * 5000)
    assert len(str(refused.value)) < 200


def test_a_consumed_event_with_a_bad_id_is_malformed() -> None:
    env = events_pb2.Envelope(event_id="e", session_id="x" * 300, session_requested=events_pb2.SessionRequested())
    with pytest.raises(events.MalformedEvent):
        events.decode(env.SerializeToString())
    env = events_pb2.Envelope(event_id="e", session_id="s", job_id="a.b", job_started=events_pb2.JobStarted())
    with pytest.raises(events.MalformedEvent):
        events.decode(env.SerializeToString())
