"""A large object split into Id ranges (issue 21, domain_split): every Id falls in exactly one range, the ends
are open, the ranges are about equal, a kept split's top range is cut further as the object grows (and only
it), and an object split in ranges completed only when all its range jobs did. Then the planner: the first
split reads the lowest and highest Id (two calls) and is kept; a later session reuses it without a call; the
plan's data jobs carry the ranges."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2

from services.canonical import id_suffix
from services.discovery import domain as d
from services.discovery.application import Planner
from services.discovery.domain_split import (
    WHOLE,
    IdRange,
    completed_objects,
    id_number,
    id_of,
    parts_for,
    range_job_id,
    ranges_of,
    split_ranges,
    split_top,
    top_parts,
)
from tests.discovery.fakes import FakeClock, FakeDiscoveryStore, FakeOrg
from tests.platform.fakes import FakeBus

PREFIX_BASE = id_number("001000000000000")  # Account Ids: key prefix 001, the counter after it


def account_id(counter: int) -> str:
    return id_of(PREFIX_BASE + counter)


def holding(ranges: tuple[IdRange, ...], record_id: str) -> list[int]:
    return [i for i, r in enumerate(ranges) if r.holds(record_id)]


def test_an_id_and_its_number_round_trip_with_salesforce_checksum() -> None:
    rid = "001A0000006Vm9rIAC"
    assert id_of(id_number(rid)) == rid
    assert id_of(id_number(rid))[15:] == id_suffix(rid[:15])
    assert id_number("000000000000001") == 1
    assert id_number("00000000000000a") == 36  # base62 in ASCII order: digits, upper, lower


def test_a_small_object_is_not_split() -> None:
    assert parts_for(1_000_000, 1_000_000) == 1
    assert parts_for(1_000_001, 1_000_000) == 2
    assert parts_for(5, 0) == 1  # 0: never split
    assert split_ranges(999, account_id(1), account_id(999), 1000) == WHOLE
    assert split_ranges(5000, "", "", 1000) == WHOLE  # no records read: not split
    assert split_ranges(5000, account_id(7), account_id(7), 1000) == WHOLE  # one Id


def test_three_equal_ranges_open_at_both_ends() -> None:
    ranges = split_ranges(3000, account_id(1), account_id(3000), 1000)
    assert len(ranges) == 3
    assert ranges[0].id_from == "" and ranges[-1].id_to == ""
    assert [r.id_to for r in ranges[:-1]] == [r.id_from for r in ranges[1:]]
    sizes = [sum(1 for n in range(1, 3001) if r.holds(account_id(n))) for r in ranges]
    assert sizes == [1000, 1000, 1000]
    # records created after the split (higher counters) and Ids below the lowest are in a range
    assert holding(ranges, account_id(10**6)) == [2]
    assert holding(ranges, account_id(0)) == [0]


@settings(max_examples=300, deadline=None)
@given(
    low=st.integers(0, 62**9 - 1),
    width=st.integers(0, 10**7),
    count=st.integers(0, 10**7),
    split=st.integers(0, 10**6),
    probes=st.lists(st.integers(-(10**7), 2 * 10**7), max_size=40),
)
def test_every_id_falls_in_exactly_one_range(low: int, width: int, count: int, split: int, probes: list[int]) -> None:
    ranges = split_ranges(count, account_id(low), account_id(low + width), split)
    assert ranges[0].id_from == "" and ranges[-1].id_to == ""
    assert len(ranges) <= max(parts_for(count, split), 1)
    bounds = [r.id_to for r in ranges[:-1]]
    assert bounds == sorted(set(bounds))  # strictly increasing: no empty or overlapping range
    for probe in [0, width, *probes]:
        n = low + probe
        if 0 <= n + PREFIX_BASE < 62**15:
            assert len(holding(ranges, account_id(n))) == 1


@settings(max_examples=200, deadline=None)
@given(
    first=st.integers(2, 6),
    grown=st.integers(0, 10**5),
    split=st.integers(1, 10**4),
    probes=st.lists(st.integers(0, 10**6), max_size=30),
)
def test_the_top_range_alone_is_cut_and_every_id_still_falls_in_one(
    first: int, grown: int, split: int, probes: list[int]
) -> None:
    ranges = split_ranges(first * split, account_id(0), account_id(first * split), split)
    count = first * split + grown
    parts = top_parts(ranges, count, split)
    after = split_top(ranges, account_id(count), parts)
    assert after[: len(ranges) - 1] == ranges[:-1]  # the ranges below keep their bounds (and their marks)
    assert after[len(ranges) - 1].id_from == ranges[-1].id_from and after[-1].id_to == ""
    if parts:
        assert len(after) == len(ranges) - 1 + parts
    for n in [0, count, *probes]:
        assert len(holding(after, account_id(n))) == 1


def test_the_top_range_is_cut_only_past_twice_the_split_size() -> None:
    ranges = split_ranges(3000, account_id(1), account_id(3000), 1000)
    assert top_parts(ranges, 3999, 1000) == 0  # the top holds about 1,999: it stays
    assert top_parts(ranges, 4000, 1000) == 2
    assert top_parts(ranges, 6500, 1000) == 5
    assert top_parts(WHOLE, 10**9, 1000) == 0  # never split: split_ranges decides, from the lowest Id
    cut = split_top(ranges, account_id(6000), 4)
    assert len(cut) == 6 and cut[:2] == ranges[:2]
    assert split_top(ranges, "", 4) == ranges  # no highest Id read
    assert ranges_of([r.id_to for r in cut[:-1]]) == cut


def test_job_ids_per_range_and_completion_of_a_split_object() -> None:
    assert range_job_id("Account", 0, 1) == "data-Account"
    assert [range_job_id("Account", i, 3) for i in range(3)] == ["data-Account-1", "data-Account-2", "data-Account-3"]
    jobs_ = [("data-Account-1", "Account"), ("data-Account-2", "Account"), ("data-Lead", "Lead")]
    assert completed_objects(jobs_, {"data-Account-1", "data-Lead"}) == {"Lead"}
    assert completed_objects(jobs_, {"data-Account-1", "data-Account-2"}) == {"Account"}


def test_plan_jobs_gives_each_range_its_job_in_id_order() -> None:
    fields = [d.FieldInfo("Id", "id"), d.FieldInfo("Name", "string"), d.FieldInfo("SystemModstamp", "datetime")]
    describe = d.ObjectDescribe("Account", tuple(fields), "h")
    policy = d.Policy("p1", "o1", scope=d.Scope())
    account = d.GlobalObject("Account", key_prefix="001", queryable=True, replicateable=True)
    lead = d.GlobalObject("Lead", key_prefix="00Q", queryable=True, replicateable=True)
    lead_describe = d.ObjectDescribe("Lead", tuple(fields), "h2")
    resolution = d.resolve(policy, [account, lead], {"Account": describe, "Lead": lead_describe}, None, {}, None)
    ranges = split_ranges(3000, account_id(1), account_id(3000), 1000)
    planned = d.plan_jobs(policy, resolution.schema, {"Account": 3000, "Lead": 10}, {"Account": ranges})
    data = [j for j in planned if isinstance(j, d.PlannedDataJob)]
    assert [(j.job_id, j.id_from, j.id_to, j.expected_records) for j in data] == [
        ("data-Account-1", "", ranges[0].id_to, 1000),
        ("data-Account-2", ranges[1].id_from, ranges[1].id_to, 1000),
        ("data-Account-3", ranges[2].id_from, "", 1000),
        ("data-Lead", "", "", 10),
    ]


# ---- the planner: splits decided once, kept, reused, grown at the top ------------------------------------------

FIELDS: list[dict[str, object]] = [
    {"name": "Id", "type": "id", "nillable": False},
    {"name": "Name", "type": "string"},
    {"name": "SystemModstamp", "type": "datetime", "nillable": False},
]
CONNECTION = d.Connection("https://login.example.com", d.AuthFlow.CLIENT_CREDENTIALS, "id", "env:X")


class CountingOrg(FakeOrg):
    """The fake org, counting the edge_id queries (the lowest and highest Id) by object."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.edges: list[tuple[str, bool]] = []

    def edge_id(self, object_name: str, *, highest: bool) -> str:
        self.edges.append((object_name, highest))
        return super().edge_id(object_name, highest=highest)


async def planned_world(split_records: int) -> tuple[FakeDiscoveryStore, CountingOrg, FakeBus, Planner]:
    store = FakeDiscoveryStore()
    await store.create_org(d.Org("acme", "Acme", CONNECTION))
    await store.create_policy(d.Policy(policy_id="nightly", org_id="acme", files=False, metadata=False))
    accounts = {account_id(n) for n in range(1, 31)}
    org = CountingOrg({"Account": FIELDS, "Contact": FIELDS}, {"Account": accounts, "Contact": {"003A", "003B"}})
    bus = FakeBus()

    async def storage() -> None:
        return None

    planner = Planner(store, lambda _c: org, storage, bus, FakeClock(), split_records=split_records)
    return store, org, bus, planner


def data_jobs(bus: FakeBus, session_id: str) -> list[jobs_pb2.JobSpec]:
    return [s for s in bus.jobs if s.session_id == session_id and s.type == ev.JOB_TYPE_DATA]


async def test_a_large_object_is_split_once_and_its_ranges_kept_by_later_sessions() -> None:
    store, org, bus, planner = await planned_world(split_records=10)
    first = await planner.plan("s1", ev.SessionRequested(policy_id="nightly", org_id="acme"))
    assert first.planned
    specs = data_jobs(bus, "s1")
    account = [s for s in specs if s.object_name == "Account"]
    assert [s.job_id for s in account] == ["data-Account-1", "data-Account-2", "data-Account-3"]
    assert [s.job_id for s in specs if s.object_name == "Contact"] == ["data-Contact"]
    assert account[0].data.id_from == "" and account[-1].data.id_to == ""
    assert [s.data.expected_records for s in account] == [10, 10, 10]
    ranges = tuple(IdRange(s.data.id_from, s.data.id_to) for s in account)
    for rid in org.ids["Account"]:
        assert len(holding(ranges, rid)) == 1
    assert sorted(org.edges) == [("Account", False), ("Account", True)]  # two queries, at the first split only
    assert await store.object_splits("nightly") == {"Account": ranges}

    # one range failed: the object is read in full again (every range), the other object is not
    await store.record_outcomes(
        [("s1", s.job_id, "JOB_OUTCOME_SUCCESS") for s in specs if s.job_id != "data-Account-2"]
        + [("s1", "data-Account-2", "JOB_OUTCOME_ERROR")]
    )
    org.edges.clear()
    await planner.plan("s2", ev.SessionRequested(policy_id="nightly", org_id="acme"))
    again = [s for s in data_jobs(bus, "s2") if s.object_name == "Account"]
    assert tuple(IdRange(s.data.id_from, s.data.id_to) for s in again) == ranges  # kept: each range's marks valid
    assert all(s.data.full for s in again)
    assert not any(s.data.full for s in data_jobs(bus, "s2") if s.object_name == "Contact")
    assert org.edges == []  # a kept split costs no call

    # the object grows past twice the split size above its kept ranges: the open top range alone is cut further
    org.ids["Account"] |= {account_id(n) for n in range(31, 61)}
    await planner.plan("s3", ev.SessionRequested(policy_id="nightly", org_id="acme"))
    grown = tuple(IdRange(s.data.id_from, s.data.id_to) for s in data_jobs(bus, "s3") if s.object_name == "Account")
    assert grown[:2] == ranges[:2] and grown[2].id_from == ranges[2].id_from and len(grown) == 6
    assert org.edges == [("Account", True)]  # the highest Id only
    for rid in org.ids["Account"]:
        assert len(holding(grown, rid)) == 1
    assert (await store.object_splits("nightly"))["Account"] == grown


async def test_split_records_zero_never_splits() -> None:
    _store, org, bus, planner = await planned_world(split_records=0)
    await planner.plan("s1", ev.SessionRequested(policy_id="nightly", org_id="acme"))
    assert [s.job_id for s in data_jobs(bus, "s1")] == ["data-Account", "data-Contact"]
    assert org.edges == []
