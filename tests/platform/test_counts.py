"""The one Counts: its event form, its JSON form, and the sums the fold relies on."""

from sfvault.events.v1 import events_pb2

from services.platform import events
from services.platform.counts import ZERO, Counts, RestoreCounts


def test_counts_round_trip_through_the_event_and_json_forms() -> None:
    c = Counts(received=10, new_versions=4, changed=1, unchanged=5, deleted=0, bytes=99, files=2, api_calls=3)
    assert events.counts_to_pb(c) == events_pb2.Counts(
        received=10, new_versions=4, changed=1, unchanged=5, bytes=99, files=2, api_calls=3
    )
    assert events.counts_from_pb(events.counts_to_pb(c)) == c
    assert Counts.from_json(c.to_json()) == c
    assert Counts.from_json('{"received": 2, "unknown": 7}') == Counts(received=2)


def test_sum_max_and_restore_points() -> None:
    a, b = Counts(received=3, changed=2), Counts(received=1, deleted=4)
    assert a + ZERO is a
    assert a + b == Counts(received=4, changed=2, deleted=4)
    assert a.max(b) == Counts(received=3, changed=2, deleted=4)
    assert (a + b).restore_points == 6


def test_restore_counts_add_json_and_protobuf_round_trip() -> None:
    a = RestoreCounts("Account", created=2, failed=1, write_calls=1)
    b = RestoreCounts(updated=3, files=4, write_calls=2)
    total = a + b
    assert total == RestoreCounts("Account", created=2, updated=3, failed=1, files=4, write_calls=3)
    assert RestoreCounts.from_json(total.to_json()) == total
    assert "object_name" not in b.to_json()
    assert events.restore_counts_from_pb(events.restore_counts_to_pb(total)) == total
    assert events.restore_counts_to_pb(b, "Contact").object_name == "Contact"
    unnamed = events.restore_counts_from_pb(events.restore_counts_to_pb(total), named=False)
    assert unnamed == RestoreCounts(created=2, updated=3, failed=1, files=4, write_calls=3)
    assert a.max(b) == RestoreCounts("Account", created=2, updated=3, failed=1, files=4, write_calls=2)
