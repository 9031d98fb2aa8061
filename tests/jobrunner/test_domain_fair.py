"""The fairness rules between orgs (services.jobrunner.domain_fair): pure, no I/O."""

from __future__ import annotations

from services.jobrunner.domain_fair import Admission, Waiting, admit, attempt, new_pass, number, org_limit, pick


def window(*orgs: str) -> list[Waiting]:
    return [Waiting(org, i) for i, org in enumerate(orgs)]


def test_the_org_with_the_fewest_running_goes_first_whatever_the_arrival_order() -> None:
    held = window("a", "a", "a", "b", "c")
    # a already runs two: b and c (none running) before a's older jobs
    assert pick(held, {"a": 2}, 2, cap=8) == [3, 4]


def test_round_robin_across_orgs_when_none_runs() -> None:
    held = window("a", "a", "a", "b", "b", "c")
    assert [held[i].org for i in pick(held, {}, 6, cap=8)] == ["a", "b", "c", "a", "b", "a"]


def test_oldest_first_within_an_org_and_between_equals() -> None:
    held = [Waiting("b", 5), Waiting("a", 9), Waiting("a", 2), Waiting("b", 1)]
    assert pick(held, {}, 2, cap=8) == [3, 2]  # b's oldest (1), then a's oldest (2)


def test_an_org_at_its_cap_gets_no_more_even_with_free_slots() -> None:
    held = window("a", "a", "a")
    assert pick(held, {"a": 1}, 4, cap=2) == [0]
    assert pick(held, {"a": 2}, 4, cap=2) == []


def test_no_more_than_the_free_slots() -> None:
    assert pick(window("a", "b", "c"), {}, 0, cap=4) == []
    assert len(pick(window("a", "b", "c"), {}, 2, cap=4)) == 2


def test_a_window_with_room_keeps_every_job() -> None:
    assert admit("a", window("a", "a"), 3) == Admission(True)


def test_a_full_window_makes_room_at_the_expense_of_the_org_holding_most() -> None:
    held = window("a", "a", "a", "b")
    # c holds none, a holds three: a's youngest (index 2) goes to the back of the stream
    assert admit("c", held, 4) == Admission(True, 2)


def test_a_full_window_defers_a_job_of_an_org_holding_its_share() -> None:
    assert admit("a", window("a", "a", "b", "b"), 4) == Admission(False)
    assert admit("b", window("a", "a", "b", "c"), 4) == Admission(False)  # a would hold as many as b
    assert admit("a", window("a", "a", "a", "a"), 4) == Admission(False)  # one org alone keeps its window


def test_repeated_admissions_tend_to_an_equal_share() -> None:
    held = window(*"aaaaaaaa")
    arrived = len(held)
    for org in "bbbbcccc" * 2:
        decision = admit(org, held, 8)
        if decision.evict is not None:
            held.pop(decision.evict)
        if decision.keep:
            arrived += 1
            held.append(Waiting(org, arrived))
    counts = {o: sum(w.org == o for w in held) for o in "abc"}
    assert sorted(counts.values()) == [2, 3, 3] and sum(counts.values()) == 8


def test_a_new_pass_once_half_the_window_started() -> None:
    assert not new_pass(129, 256)
    assert new_pass(128, 256)
    assert new_pass(200, 256, starved=True)  # an org it deferred has nothing here any more


def test_attempts_count_deliveries_and_earlier_messages() -> None:
    assert attempt(None, 1) == 1
    assert attempt(None, 3) == 3  # redelivered twice (a crash): its third attempt
    assert attempt("2", 1) == 3  # deferred after two attempts: this message's first delivery is the third
    assert attempt("x", 1) == 1 and number("") == 0 and number("4") == 4


def test_orgs_take_turns_by_the_time_they_used_a_long_job_costs_its_org_its_next_turns() -> None:
    held = window("a", "a", "b")
    # none runs; a's jobs have run 30 s, b's 2 s: b first, though younger
    assert pick(held, {}, 1, cap=8, used={"a": 30.0, "b": 2.0}) == [2]
    # b never ran: b first
    assert pick(held, {}, 1, cap=8, used={"a": 0.5}) == [2]
    # fewest running still comes first: b runs one, a none
    assert pick(held, {"b": 1}, 1, cap=8, used={"a": 30.0}) == [0]


def test_one_job_of_an_org_until_the_whole_stream_was_seen() -> None:
    assert org_limit(4, seen_all=False) == 1
    assert org_limit(4, seen_all=True) == 4
    held = window("a", "a", "b", "a")
    assert [held[i].org for i in pick(held, {}, 4, cap=org_limit(4, seen_all=False))] == ["a", "b"]
