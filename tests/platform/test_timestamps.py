"""The one datetime <-> Timestamp conversion."""

import datetime as dt

from sfvault.session.v1 import session_pb2 as api

from services.platform import timestamps


def test_a_datetime_and_seconds_become_the_same_timestamp_and_none_stays_unset() -> None:
    at = dt.datetime(2026, 11, 1, 12, 30, 5, tzinfo=dt.UTC)
    assert timestamps.to_pb(at) == timestamps.to_pb(at.timestamp())
    assert timestamps.to_pb(None) is None
    msg = api.Session(session_id="s", started_at=timestamps.to_pb(at), finished_at=timestamps.to_pb(None))
    assert not msg.HasField("finished_at")
    assert timestamps.from_pb(msg, "started_at") == at
    assert timestamps.from_pb(msg, "finished_at") is None
