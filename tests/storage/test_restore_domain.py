"""Restore's pure rules (services/storage/domain.py), without I/O: an outcome's checks, the counts per object of a
chunk, which outcomes enter the Id map, a chunk's identity, and ReadRecordsAsOf's one selection."""

from __future__ import annotations

import datetime as dt

import pytest

from services.storage.domain import (
    CREATED,
    FAILED,
    SKIPPED,
    UNDELETED,
    UPDATED,
    InvalidArgument,
    RecordSelection,
    RestoreCounts,
    RestoreOutcome,
    check_outcome,
    id_map_entries,
    restore_counts,
    restore_digest,
    select_records,
)
from tests.storage.conftest import sf_id

A1, A2, A9 = sf_id("001", 1), sf_id("001", 2), sf_id("001", 9)


def test_an_outcome_is_stored_with_18_character_ids_and_clean_text() -> None:
    got = check_outcome(
        RestoreOutcome("Account", A1[:15], A9[:15], CREATED, message="bad\x00 thing" + "x" * 20_000, note="n"), 0
    )
    assert (got.source_id, got.target_id) == (A1, A9)
    assert got.message.startswith("bad thing") and len(got.message) == 10_000
    assert check_outcome(RestoreOutcome("Account", A1, "", FAILED), 3).target_id == ""
    for bad, match in (
        (RestoreOutcome("Account", A1, "", 0), "outcome 2: unknown state 0"),
        (RestoreOutcome("Account", "", "", SKIPPED), "outcome 2 source_id"),
        (RestoreOutcome("Account", A1, "x", SKIPPED), "outcome 2 target_id"),
        (RestoreOutcome("Account", A1, "", UPDATED, changed_fields=("Bad Name",)), "outcome 2 changed field"),
        (RestoreOutcome("", A1, "", SKIPPED), "outcome 2 object_name"),
    ):
        with pytest.raises(InvalidArgument, match=match):
            check_outcome(bad, 2)


def test_counts_per_object_in_order_with_the_chunks_calls_on_the_first() -> None:
    outcomes = [
        RestoreOutcome("Contact", sf_id("003", 1), "", FAILED),
        RestoreOutcome("Account", A1, A9, CREATED),
        RestoreOutcome("Account", A2, A2, UNDELETED),
        RestoreOutcome("Contact", sf_id("003", 2), sf_id("003", 2), SKIPPED),
        RestoreOutcome("Contact", sf_id("003", 3), sf_id("003", 3), UPDATED),
    ]
    assert restore_counts(outcomes, write_calls=4, files=2) == (
        RestoreCounts("Contact", updated=1, skipped=1, failed=1, files=2, write_calls=4),
        RestoreCounts("Account", created=1, undeleted=1),
    )
    assert restore_counts([], write_calls=0, files=0) == ()
    assert restore_counts([], write_calls=1, files=0) == (RestoreCounts("", write_calls=1),)
    counts = RestoreCounts("Account", 1, 2, 3, 4, 5, 6, 7, 8)
    assert RestoreCounts.from_json(counts.to_json()) == counts


def test_the_id_map_takes_records_now_under_another_id_never_a_failed_one_nor_a_dry_run() -> None:
    outcomes = [
        RestoreOutcome("Account", A1, A9, CREATED),
        RestoreOutcome("Account", A2, A2, UPDATED),  # same Id: nothing to map
        RestoreOutcome("Account", sf_id("001", 3), sf_id("001", 8), SKIPPED),  # matched in another org
        RestoreOutcome("Account", sf_id("001", 4), sf_id("001", 7), FAILED),
        RestoreOutcome("Account", sf_id("001", 5), "", CREATED),  # a prediction without an Id
    ]
    assert id_map_entries(outcomes, dry_run=False) == {A1: A9, sf_id("001", 3): sf_id("001", 8)}
    assert id_map_entries(outcomes, dry_run=True) == {}


def test_a_chunks_identity_is_its_outcomes_not_their_messages() -> None:
    one = [RestoreOutcome("Account", A1, A9, CREATED, message="a")]
    same = restore_digest("00D1", "00D2", one, [], False)
    assert restore_digest("00D1", "00D2", [RestoreOutcome("account", A1, A9, CREATED, message="b")], [], False) == same
    assert restore_digest("00D1", "00D2", one, [], True) != same
    assert restore_digest("00D1", "00D2", one, ["k"], False) != same
    assert restore_digest("00D1", "00D2", [RestoreOutcome("Account", A1, A9, SKIPPED)], [], False) != same


def test_a_selection_is_exactly_one_kind() -> None:
    got = select_records(RecordSelection(ids=(A1[:15], A1, A2)))
    assert got.ids == (A1, A2)
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert select_records(RecordSelection(deleted_since=when)).deleted_since == when
    kids = select_records(RecordSelection(where_field="AccountId", where_in=(A1[:15],)))
    assert kids.where_in == (A1,)
    with pytest.raises(InvalidArgument, match="got deleted_since, changed_since"):
        select_records(RecordSelection(deleted_since=when, changed_since=when))
    with pytest.raises(InvalidArgument, match="at most 100000"):
        select_records(RecordSelection(ids=(A1,) * 100_001))
