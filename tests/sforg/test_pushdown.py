"""The SQL prefilter of window queries: the same rows as the unfiltered scan and a model, while SQLite reads
only the window from the SystemModstamp index."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import re
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sforg.clock import UTC, parse_datetime, stamp
from sforg.ids import make_id
from sforg.org import Org, StoreSource
from sforg.query import Prefilter, count_matches, execute
from sforg.store import ascending_run
from sforg.testing import Admin

OBJ = "Win__c"
BASE = 1767225600.0  # 2026-01-01T00:00:00Z
# 40 distinct modstamps 37.5 s apart (every other one has .500 milliseconds), shared by 800 rows: many ties.
STAMPS = [stamp(BASE + k * 37.5) for k in range(40)]
A, K, B = STAMPS[10], STAMPS[21], STAMPS[30]  # window start, keyset modstamp (an odd one: .500), window end


class Unfiltered(StoreSource):
    """The scan as it was before the pushdown: every row of the object, the prefilter ignored."""

    def scan(
        self, obj: str, columns: list[str], include_deleted: bool, prefilter: Prefilter = ()
    ) -> Iterator[tuple[Any, ...]]:
        return super().scan(obj, columns, include_deleted)


class Counting(StoreSource):
    """The store's scan, counting the rows SQLite hands back."""

    rows = 0

    def scan(
        self, obj: str, columns: list[str], include_deleted: bool, prefilter: Prefilter = ()
    ) -> Iterator[tuple[Any, ...]]:
        for r in super().scan(obj, columns, include_deleted, prefilter):
            self.rows += 1
            yield r


@dataclass
class Row:
    """A record of the model: its modstamp as a datetime (None for NULL), Id, Name and whether it is deleted."""

    sms: dt.datetime | None
    id: str
    name: str
    deleted: bool


Pred = Callable[[Row, dict[str, str]], bool]


@dataclass
class Local:
    org: Org
    rows: list[Row]
    id_of: dict[int, str]  # rowid -> Id
    names: dict[str, str]  # placeholders of the queries: {mid} {lo} {hi} {lo15}

    def query(self, where: str) -> str:
        return f"SELECT Id, Name FROM {OBJ} WHERE {where.format(**self.names)} ORDER BY SystemModstamp, Id"

    def run(self, soql: str, include_deleted: bool, bulk: bool, src: StoreSource | None = None) -> list[str]:
        plan = self.org.plan(soql, include_deleted, bulk)
        return [self.id_of[r] for r in execute(plan, src or self.org.src, self.org.context())]

    def model(self, pred: Pred, include_deleted: bool) -> list[str]:
        """Ids of the rows matching pred, in ORDER BY SystemModstamp, Id order (NULLs first)."""
        keep = [r for r in self.rows if (include_deleted or not r.deleted) and pred(r, self.names)]
        keep.sort(key=lambda r: (r.sms is not None, r.sms or dt.datetime.min.replace(tzinfo=UTC), r.id))
        return [r.id for r in keep]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Local:
    org = Org(Path(tmp_path_factory.mktemp("pushdown")), scale=100, seed=3)
    org.add_object("Win")
    prefix = org.obj(OBJ).key_prefix
    rng = random.Random(7)
    rows = []
    for i in range(800):
        rid = make_id(prefix, i + 1)
        sms = None if i % 97 == 0 else rng.choice(STAMPS)  # a few NULLs, which no comparison matches
        rows.append((rid, f"n{i % 10}", sms, 1 if i % 9 == 0 else 0))
    rng.shuffle(rows)  # rowid order is neither Id order nor modstamp order
    # CreatedDate = SystemModstamp: the count tests run every case on an unindexed datetime too.
    org.store.insert_many(OBJ, ["Id", "Name", "SystemModstamp", "IsDeleted", "CreatedDate"], [(*r, r[2]) for r in rows])
    at_k = sorted(r[0] for r in rows if r[2] == K)
    lo, hi = make_id(prefix, 200), make_id(prefix, 600)
    return Local(
        org,
        [Row(parse_datetime(sms) if sms else None, rid, name, bool(d)) for rid, name, sms, d in rows],
        {rowid: rid for rowid, rid in org.store.scan(OBJ, ["_rowid", "Id"])},
        {"mid": at_k[len(at_k) // 2], "lo": lo, "hi": hi, "lo15": lo[:15]},
    )


def t(s: str) -> dt.datetime:
    return parse_datetime(s)


def lit(s: str, offset: str = "Z") -> str:
    """A stored stamp as a SOQL literal in another zone, e.g. +02:00 or -0530 (same instant)."""
    if offset == "Z":
        return s
    sign = 1 if offset[0] == "+" else -1
    digits = offset[1:].replace(":", "")
    local = t(s) + sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}" + offset


def _in(lo: str, r: Row, hi: str, hi_open: bool = True) -> bool:
    """lo <= modstamp < hi (or <= hi); a NULL modstamp is in no range."""
    return r.sms is not None and t(lo) <= r.sms and (r.sms < t(hi) if hi_open else r.sms <= t(hi))


def _after_key(r: Row, n: dict[str, str]) -> bool:
    return r.sms is not None and (r.sms > t(K) or (r.sms == t(K) and r.id > n["mid"]))


S = "SystemModstamp"
# name, WHERE clause ({mid} {lo} {hi} {lo15} filled in), the model's predicate, the expected prefilter
# (None: not checked, for a relative date).
CASES: list[tuple[str, str, Pred, tuple[tuple[str, str, str], ...] | None]] = [
    ("gt", f"{S} > {A}", lambda r, n: r.sms is not None and r.sms > t(A), ((S, ">", A),)),
    ("ge", f"{S} >= {A}", lambda r, n: r.sms is not None and r.sms >= t(A), ((S, ">=", A),)),
    ("lt", f"{S} < {B}", lambda r, n: r.sms is not None and r.sms < t(B), ((S, "<", B),)),
    ("le", f"{S} <= {B}", lambda r, n: r.sms is not None and r.sms <= t(B), ((S, "<=", B),)),
    ("eq", f"{S} = {K}", lambda r, n: r.sms == t(K), ((S, "=", K),)),
    ("window", f"{S} >= {A} AND {S} < {B}", lambda r, n: _in(A, r, B), ((S, ">=", A), (S, "<", B))),
    (
        "keyset",
        f"{S} >= {A} AND {S} <= {B} AND ({S} > {K} OR ({S} = {K} AND Id > '{{mid}}'))",
        lambda r, n: _in(A, r, B, hi_open=False) and _after_key(r, n),
        ((S, ">=", K), (S, "<=", B)),
    ),
    ("keyset only", f"({S} > {K} OR ({S} = {K} AND Id > '{{mid}}'))", _after_key, ((S, ">=", K),)),
    (
        "zone offsets",
        f"{S} >= {lit(A, '+02:00')} AND {S} < {lit(B, '-05:30')}",
        lambda r, n: _in(A, r, B),
        ((S, ">=", A), (S, "<", B)),
    ),
    ("offset without colon", f"{S} <= {lit(K, '+0530')}", lambda r, n: _in(STAMPS[0], r, K, False), ((S, "<=", K),)),
    ("short millis", f"{S} = 2026-01-01T00:13:07.5Z", lambda r, n: r.sms == t(K), ((S, "=", K),)),
    ("no millis", f"{S} >= 2026-01-01T00:06:15Z", lambda r, n: r.sms is not None and r.sms >= t(A), ((S, ">=", A),)),
    (
        "dates",
        f"{S} >= 2026-01-01 AND {S} < 2026-01-02",
        lambda r, n: r.sms is not None,
        ((S, ">=", "2026-01-01T00:00:00.000Z"), (S, "<", "2026-01-02T00:00:00.000Z")),
    ),
    ("before the data", f"{S} < 2026-01-01", lambda r, n: False, ((S, "<", "2026-01-01T00:00:00.000Z"),)),
    (
        "ids",
        "Id >= '{lo}' AND Id < '{hi}'",
        lambda r, n: n["lo"] <= r.id < n["hi"],
        (("Id", ">=", "{lo}"), ("Id", "<", "{hi}")),
    ),
    ("15-char id", "Id = '{lo15}'", lambda r, n: r.id == n["lo"], (("Id", "=", "{lo}"),)),
    (
        "both columns",
        f"{S} >= {A} AND Id > '{{mid}}' AND Name != 'n3'",
        lambda r, n: r.sms is not None and r.sms >= t(A) and r.id > n["mid"] and r.name != "n3",
        (("Id", ">", "{mid}"), (S, ">=", A)),
    ),
    (
        "or on another column",
        f"{S} > {B} OR Name = 'n1'",
        lambda r, n: (r.sms is not None and r.sms > t(B)) or r.name == "n1",
        (),
    ),
    ("not", f"NOT {S} > {A}", lambda r, n: not (r.sms is not None and r.sms > t(A)), ()),
    ("not equal", f"{S} != {K}", lambda r, n: r.sms != t(K), ()),
    ("null", f"{S} = null", lambda r, n: r.sms is None, ()),
    ("in", f"{S} IN ({B}, {A}, {K})", lambda r, n: r.sms in (t(A), t(K), t(B)), ((S, ">=", A), (S, "<=", B))),
    ("empty", f"{S} > {B} AND {S} < {A}", lambda r, n: False, ((S, ">", B), (S, "<", A))),
    (
        "or of ranges",
        f"({S} >= {A} AND {S} < {K}) OR {S} = {B}",
        lambda r, n: _in(A, r, K) or r.sms == t(B),
        ((S, ">=", A), (S, "<=", B)),
    ),
    ("object prefix", f"{OBJ}.{S} >= {A}", lambda r, n: r.sms is not None and r.sms >= t(A), ((S, ">=", A),)),
]
# Pre-existing behaviour kept as is, compared with the unfiltered scan only: a year before 1000 has no stored
# (4-digit) form, so it is not pushed down; a relative date literal is.
UNMODELLED: list[tuple[str, str, tuple[tuple[str, str, str], ...] | None]] = [
    ("year 999", f"{S} > 0999-01-01T00:00:00Z", ()),
    ("relative", f"{S} = LAST_N_DAYS:3650", None),
]
PATHS = [("query", False, False), ("queryAll", True, False), ("bulk", False, True), ("bulk queryAll", True, True)]


@pytest.mark.parametrize("path,include_deleted,bulk", PATHS, ids=[p[0] for p in PATHS])
@pytest.mark.parametrize("name,where,pred,expected", CASES, ids=[c[0] for c in CASES])
def test_window_queries_match_the_unfiltered_scan_and_the_model(
    local: Local, name: str, where: str, pred: Pred, expected: Any, path: str, include_deleted: bool, bulk: bool
) -> None:
    soql = local.query(where)
    got = local.run(soql, include_deleted, bulk)
    assert got == local.run(soql, include_deleted, bulk, Unfiltered(local.org.store, local.org.catalogue))
    assert got == local.model(pred, include_deleted)


@pytest.mark.parametrize("include_deleted", [False, True])
@pytest.mark.parametrize("name,where,expected", UNMODELLED, ids=[c[0] for c in UNMODELLED])
def test_unmodelled_queries_match_the_unfiltered_scan(
    local: Local, name: str, where: str, expected: Any, include_deleted: bool
) -> None:
    soql = local.query(where)
    unfiltered = Unfiltered(local.org.store, local.org.catalogue)
    assert local.run(soql, include_deleted, False) == local.run(soql, include_deleted, False, unfiltered)


@pytest.mark.parametrize(
    "name,where,expected",
    [(c[0], c[1], c[3]) for c in CASES] + UNMODELLED,
    ids=[c[0] for c in CASES] + [c[0] for c in UNMODELLED],
)
def test_prefilter_of(local: Local, name: str, where: str, expected: Any) -> None:
    plan = local.org.plan(local.query(where), False)
    if expected is not None:
        assert plan.prefilter == tuple((c, op, v.format(**local.names)) for c, op, v in expected)
    else:
        assert [c for c, *_ in plan.prefilter] == [S, S]


def test_no_prefilter_through_a_parent(local: Local) -> None:
    plan = local.org.plan("SELECT Id FROM Contact WHERE Account.SystemModstamp >= 2026-01-01T00:00:00Z", False)
    assert plan.prefilter == ()


def test_the_window_is_read_from_the_index(local: Local, monkeypatch: pytest.MonkeyPatch) -> None:
    store = local.org.store
    seen: list[tuple[str, list[str]]] = []
    scan = store.scan

    def spy(
        obj: str, columns: Sequence[str], where: str = "", params: Sequence[Any] = (), order: str = "_rowid"
    ) -> Any:
        plan = store.conn().execute(f'EXPLAIN QUERY PLAN SELECT _rowid FROM "o_{obj}" {where} ORDER BY {order}', params)
        seen.append((where, [row[3] for row in plan]))
        return scan(obj, columns, where, params, order)

    monkeypatch.setattr(store, "scan", spy)
    src = Counting(store, local.org.catalogue)
    window = local.model(lambda r, n: _in(A, r, B), False)
    assert local.run(local.query(f"{S} >= {A} AND {S} < {B}"), False, False, src) == window
    assert src.rows == len(window) < len(local.rows) / 2  # only the window came back from SQLite
    where, plan = seen[-1]
    assert f'"{S}" >= ? AND "{S}" < ?' in where.replace("likelihood(", "").replace(", 0.001)", "")
    assert any(f"INDEX ix_{OBJ}_sms (" in step for step in plan), plan
    # One-sided: a range of few rows (the newest modstamps) is read from the index too...
    local.run(local.query(f"{S} >= {STAMPS[37]}"), True, False)
    assert any(f"INDEX ix_{OBJ}_sms (" in step for step in seen[-1][1]), seen[-1]
    # ... a range of most of the table is scanned in rowid order, which is cheaper than the index and a sort.
    local.run(local.query(f"{S} >= {A}"), True, False)
    assert "likelihood" not in seen[-1][0] and f'"{S}" >= ?' in seen[-1][0]


# Random WHERE clauses over the tied modstamps, Ids and Names: the pushdown never changes the answer.
_ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
_stamp_lit = st.builds(lit, st.sampled_from(STAMPS[5:36:3]), st.sampled_from(["Z", "+02:00", "-0530"]))
_leaf = st.one_of(
    st.builds(lambda op, v: f"{S} {op} {v}", _ops, st.one_of(_stamp_lit, st.just("null"))),
    st.builds(lambda op, n: f"Id {op} '@{n}@'", _ops, st.integers(1, 800)),
    st.builds(lambda vs: f"{S} IN ({', '.join(vs)})", st.lists(_stamp_lit, min_size=1, max_size=3)),
    st.builds(lambda n: f"Name = 'n{n}'", st.integers(0, 9)),
)
_where = st.recursive(
    _leaf,
    lambda kids: st.one_of(
        st.lists(kids, min_size=2, max_size=3).map(lambda xs: "(" + " AND ".join(xs) + ")"),
        st.lists(kids, min_size=2, max_size=3).map(lambda xs: "(" + " OR ".join(xs) + ")"),
        kids.map(lambda x: f"NOT ({x})"),
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(where=_where, include_deleted=st.booleans())
def test_random_where_clauses_match_the_unfiltered_scan(local: Local, where: str, include_deleted: bool) -> None:
    prefix = local.org.obj(OBJ).key_prefix
    where = re.sub(r"@(\d+)@", lambda m: make_id(prefix, int(m.group(1))), where)
    soql = f"SELECT Id FROM {OBJ} WHERE {where}"  # rowid order: both scans must also keep it
    unfiltered = Unfiltered(local.org.store, local.org.catalogue)
    assert local.run(soql, include_deleted, False) == local.run(soql, include_deleted, False, unfiltered)


# ------------------------------------------------------------------ COUNT() answered by SQLite's count(*)


class NoScan(StoreSource):
    """A source that must not be scanned: the count is SQLite's."""

    def scan(
        self, obj: str, columns: list[str], include_deleted: bool, prefilter: Prefilter = ()
    ) -> Iterator[tuple[Any, ...]]:
        raise AssertionError("scanned")

    def scan_by_id(
        self, obj: str, columns: list[str], include_deleted: bool, prefilter: Prefilter = ()
    ) -> Iterator[tuple[Any, ...]] | None:
        raise AssertionError("scanned")


class CountsInPython(StoreSource):
    """A source that cannot count: count_matches runs the query and counts its rows, as before."""

    def count(self, obj: str, include_deleted: bool, conditions: Prefilter) -> int | None:
        return None


# Conjunctions of comparisons on Id and datetimes are counted in SQL; anything else is counted in Python.
EXACT = {"gt", "ge", "lt", "le", "eq", "window", "zone offsets", "offset without colon", "short millis", "no millis"}
EXACT |= {"dates", "before the data", "ids", "15-char id", "empty", "object prefix"}


@pytest.mark.parametrize("column", [S, "CreatedDate"])
@pytest.mark.parametrize("include_deleted", [False, True])
@pytest.mark.parametrize("name,where,pred,expected", CASES, ids=[c[0] for c in CASES])
def test_count_matches_the_model(
    local: Local, name: str, where: str, pred: Pred, expected: Any, include_deleted: bool, column: str
) -> None:
    where = where.replace(S, column).format(**local.names)
    plan = local.org.plan(f"SELECT COUNT() FROM {OBJ} WHERE {where}", include_deleted)
    want = len(local.model(pred, include_deleted))
    ctx = local.org.context()
    assert (plan.count_conditions is not None) == (name in EXACT)
    if name in EXACT:
        assert count_matches(plan, NoScan(local.org.store, local.org.catalogue), ctx) == want
        if column == S:
            assert set(plan.count_conditions or ()) == set(plan.prefilter)  # the scan's own conditions
    assert count_matches(plan, local.org.src, ctx) == want
    assert count_matches(plan, CountsInPython(local.org.store, local.org.catalogue), ctx) == want


@pytest.mark.parametrize("include_deleted", [False, True])
@pytest.mark.parametrize(
    "tail",
    [
        "",
        "LIMIT 10",
        "LIMIT 0",
        "OFFSET 7",
        "LIMIT 5 OFFSET 3",
        "OFFSET 2000",
        f"WHERE {S} >= {A} LIMIT 50 OFFSET 20",
        f"WHERE CreatedDate <= {K} ORDER BY Id LIMIT 1000 OFFSET 40",
        f"WHERE {S} >= {B} OFFSET 1999",
    ],
)
def test_count_with_limit_and_offset(local: Local, tail: str, include_deleted: bool) -> None:
    plan = local.org.plan(f"SELECT COUNT() FROM {OBJ} {tail}", include_deleted)
    ctx = local.org.context()
    assert plan.count_conditions is not None
    want = len(execute(plan, Unfiltered(local.org.store, local.org.catalogue), ctx))
    assert count_matches(plan, NoScan(local.org.store, local.org.catalogue), ctx) == want


def test_count_through_a_parent_or_by_name_is_counted_in_python(local: Local) -> None:
    org = local.org
    for soql in (
        f"SELECT COUNT() FROM Contact WHERE Account.CreatedDate <= {K}",
        f"SELECT COUNT() FROM {OBJ} WHERE Name = 'n3'",
        f"SELECT COUNT() FROM {OBJ} WHERE Name < 'n3' AND {S} >= {A}",
        f"SELECT COUNT() FROM {OBJ} WHERE LastModifiedDate = LAST_N_DAYS:3",  # relative: counted by its range
    ):
        plan = org.plan(soql, False)
        if "LAST_N_DAYS" in soql:
            assert plan.count_conditions is not None
        else:
            assert plan.count_conditions is None
        assert count_matches(plan, org.src, org.context()) == len(execute(plan, org.src, org.context()))
    n3 = sum(1 for r in local.rows if r.name == "n3" and not r.deleted)
    assert count_matches(org.plan(f"SELECT COUNT() FROM {OBJ} WHERE Name = 'n3'", False), org.src, org.context()) == n3


@settings(max_examples=150, deadline=None)
@given(where=_where, include_deleted=st.booleans(), created=st.booleans())
def test_random_counts_match_the_unfiltered_scan(
    local: Local, where: str, include_deleted: bool, created: bool
) -> None:
    prefix = local.org.obj(OBJ).key_prefix
    where = re.sub(r"@(\d+)@", lambda m: make_id(prefix, int(m.group(1))), where)
    if created:
        where = where.replace(S, "CreatedDate")
    plan = local.org.plan(f"SELECT COUNT() FROM {OBJ} WHERE {where}", include_deleted)
    unfiltered = Unfiltered(local.org.store, local.org.catalogue)
    ctx = local.org.context()
    assert count_matches(plan, local.org.src, ctx) == len(execute(plan, unfiltered, ctx))


def test_count_check_over_rest_and_composite(sf: Any, admin: Admin) -> None:
    """The backup's count check over the wire: live records created by a time, queryAll with the deleted."""
    rows = sf.query_all("SELECT Id, CreatedDate, IsDeleted FROM Contact", include_deleted=True)["records"]
    created = sorted(parse_datetime(r["CreatedDate"]) for r in rows)
    cut = created[len(created) // 3]
    at = cut.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    victims = [r["Id"] for r in rows if not r["IsDeleted"] and parse_datetime(r["CreatedDate"]) <= cut][:5]
    admin.soft_delete("Contact", ids=victims)
    try:
        live = sum(1 for r in rows if not r["IsDeleted"] and parse_datetime(r["CreatedDate"]) <= cut) - len(victims)
        every = sum(1 for r in rows if parse_datetime(r["CreatedDate"]) <= cut)
        soql = f"SELECT COUNT() FROM Contact WHERE CreatedDate <= {at}"
        assert sf.query(soql) == {"totalSize": live, "done": True, "records": []}
        assert sf.query(soql, include_deleted=True)["totalSize"] == every
        url = f"/services/data/v{sf.sf_version}/query?q={quote(soql)}"
        sub = {"method": "GET", "url": url, "referenceId": "c"}
        composite = sf.restful("composite", method="POST", json={"compositeRequest": [sub]})
        assert composite["compositeResponse"][0]["body"] == {"totalSize": live, "done": True, "records": []}
    finally:
        admin.undelete("Contact", ids=victims)


# ------------------------------------------------------------------ over the wire: REST and Bulk API 2.0


def test_window_queries_over_rest_and_bulk(sf: Any, admin: Admin) -> None:
    """Ties on SystemModstamp among live and deleted records; every path answers as the unfiltered listing."""
    admin.set_clock(time.time(), freeze=True)  # one modstamp for the updates and the deletions
    tied = admin.mass_update("Account", n=40)
    admin.soft_delete("Account", ids=tied["ids"][:6])
    admin.reset_clock()
    try:
        _check_windows(sf, tied["modstamp"])
    finally:
        admin.undelete("Account", ids=tied["ids"][:6])  # other tests look up Accounts as parents of live rows


def _check_windows(sf: Any, k: str) -> None:
    listing = sf.query_all("SELECT Id, SystemModstamp, IsDeleted FROM Account", include_deleted=True)["records"]
    rows = [(parse_datetime(r["SystemModstamp"]), r["Id"], r["IsDeleted"]) for r in listing]
    at_k = sorted(rid for sms, rid, _ in rows if sms == t(k))
    # 40 updated (6 of them deleted), and child Accounts whose ParentId the deletes cleared
    assert len(at_k) >= 40 and sum(d for sms, _, d in rows if sms == t(k)) == 6
    mid = at_k[17]
    stamps = sorted({sms for sms, _, _ in rows})
    start = stamps[len(stamps) // 2]  # a window from the middle of the data to K, and the keyset after (K, mid)
    start_lit = lit(stamp(start.timestamp()), "+02:00")
    cases: list[tuple[str, Callable[[dt.datetime, str], bool]]] = [
        (f"{S} >= {start_lit} AND {S} <= {k}", lambda s, rid: start <= s <= t(k)),
        (
            f"{S} >= {start_lit} AND ({S} > {k} OR ({S} = {k} AND Id > '{mid}'))",
            lambda s, rid: s >= start and (s > t(k) or (s == t(k) and rid > mid)),
        ),
    ]
    for where, pred in cases:
        soql = f"SELECT Id, SystemModstamp FROM Account WHERE {where} ORDER BY {S}, Id"
        for include_deleted in (False, True):
            want = [rid for s, rid, d in sorted(rows) if pred(s, rid) and (include_deleted or not d)]
            assert len(want) > 6
            rest = sf.query_all(soql, include_deleted=include_deleted)["records"]
            assert [r["Id"] for r in rest] == want
            bulk = sf.bulk2.Account.query_all if include_deleted else sf.bulk2.Account.query
            pages = list(bulk(soql, wait=0.05))
            assert [r["Id"] for page in pages for r in csv.DictReader(io.StringIO(page))] == want


# ---------------------------------------------------------------- rowids without a Python scan or sort


class PythonSorted(StoreSource):
    """A source that neither reads rows in Id order nor knows runs of rowids: execute scans and sorts itself."""

    def scan_by_id(
        self, obj: str, columns: list[str], include_deleted: bool, prefilter: Prefilter = ()
    ) -> Iterator[tuple[Any, ...]] | None:
        return None

    def run_of_rowids(self, obj: str, include_deleted: bool) -> range | None:
        return None


@pytest.mark.parametrize("include_deleted", [False, True])
@pytest.mark.parametrize(
    "tail",
    [
        "",
        "ORDER BY Id",
        "ORDER BY Id ASC NULLS FIRST",
        "ORDER BY Id NULLS LAST",
        "ORDER BY Id DESC",
        "ORDER BY Id LIMIT 17 OFFSET 5",
        "WHERE Name = 'n3' ORDER BY Id",
        f"WHERE SystemModstamp >= {A} ORDER BY Id",
        "WHERE Id > '{mid}' ORDER BY Id",
        "WHERE Id >= '{lo}' AND Id < '{hi}' ORDER BY Id",
        "ORDER BY Name, Id",
        "LIMIT 30 OFFSET 3",
    ],
)
def test_id_order_and_runs_match_the_python_sort(local: Local, tail: str, include_deleted: bool) -> None:
    soql = f"SELECT Id, Name FROM {OBJ} {tail.format(**local.names)}"
    plan = local.org.plan(soql, include_deleted, False)
    got = execute(plan, local.org.src, local.org.context())
    want = execute(plan, PythonSorted(local.org.store, local.org.catalogue), local.org.context())
    assert list(got) == list(want)
    if "ORDER BY Id" in tail and "DESC" not in tail and "WHERE" not in tail and "LIMIT" not in tail:
        assert [local.id_of[r] for r in got] == sorted(r.id for r in local.rows if include_deleted or not r.deleted)


def test_runs_of_rowids(local: Local) -> None:
    org = local.org
    # Every row (deleted ones too) is one run; the live rows are not (rows 1 in 9 are deleted).
    everything = org.run(org.plan(f"SELECT Id FROM {OBJ}", True, True))
    assert isinstance(everything, range) and list(everything) == sorted(local.id_of)
    live = org.run(org.plan(f"SELECT Id FROM {OBJ}", False, True))
    assert not isinstance(live, range) and len(live) == sum(not r.deleted for r in local.rows)
    # A sort that keeps the first and last rowid in place but swaps others is not a run.
    by_name = org.run(org.plan(f"SELECT Id FROM {OBJ} ORDER BY Name, Id", True, True))
    assert not isinstance(by_name, range)


def test_ascending_run_and_joined_rendering_keep_the_given_order(local: Local) -> None:
    assert ascending_run(range(3, 9)) and ascending_run([4, 5, 6]) and ascending_run(array("q", [7]))
    assert not ascending_run([1, 3, 2, 4]) and not ascending_run([1, 2, 4]) and not ascending_run(range(9, 3, -1))
    assert not ascending_run([0, *range(2, 2000), 1, 2000])  # first and last in place, the middle is not
    store = local.org.store
    expr = '"Id"'
    permuted = [1, *range(3, 700), 2, 700]  # the sampled check this replaced took it for a run
    joined = store.fetch_joined(OBJ, expr, permuted, "\n")
    assert joined.decode().split("\n") == [local.id_of[r] for r in permuted]
    assert store.fetch_joined(OBJ, expr, range(1, 701), "\n").decode().split("\n") == [
        local.id_of[r] for r in range(1, 701)
    ]
