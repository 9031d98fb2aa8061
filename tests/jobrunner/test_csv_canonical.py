"""Bulk CSV rows straight to canonical parts (RecordCanonicalizer.compile_rows) give exactly what the reference
reading gives: each row decoded into a record (domain.csv_decoder), then RecordCanonicalizer.parts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.canonical import FieldDef, FieldType, InvalidArgument, ObjectSchema, RecordCanonicalizer
from services.jobrunner import domain
from services.jobrunner.domain import FieldInfo

FIELDS = [
    ("Id", "id", FieldType.ID, False),
    ("IsDeleted", "boolean", FieldType.BOOLEAN, False),
    ("Name", "string", FieldType.STRING, False),
    ("ParentId", "reference", FieldType.ID, False),
    ("AnnualRevenue", "currency", FieldType.DOUBLE, False),
    ("NumberOfEmployees", "int", FieldType.INTEGER, False),
    ("Rate__c", "percent", FieldType.DOUBLE, False),
    ("Active__c", "boolean", FieldType.BOOLEAN, False),
    ("Since__c", "date", FieldType.DATE, False),
    ("Opens__c", "time", FieldType.TIME, False),
    ("CreatedDate", "datetime", FieldType.DATETIME, False),
    ("SystemModstamp", "datetime", FieldType.DATETIME, False),
    ("Score__c", "double", FieldType.DOUBLE, True),
    ("BillingStreet", "textarea", FieldType.STRING, False),
    ("BillingLatitude", "double", FieldType.DOUBLE, False),
    ("BillingLongitude", "double", FieldType.DOUBLE, False),
    ("BillingAddress", "address", FieldType.COMPOUND, False),
    ("Hq__Latitude__s", "double", FieldType.DOUBLE, False),
    ("Hq__Longitude__s", "double", FieldType.DOUBLE, False),
    ("Hq__c", "location", FieldType.COMPOUND, False),
]
COMPONENTS = {
    "BillingStreet": "BillingAddress",
    "BillingLatitude": "BillingAddress",
    "BillingLongitude": "BillingAddress",
    "Hq__Latitude__s": "Hq__c",
    "Hq__Longitude__s": "Hq__c",
}
SCHEMA = ObjectSchema("Account", tuple(FieldDef(n, t, calc) for n, _sf, t, calc in FIELDS), "001")
ID = "001000000000001AAA"
TS = "2024-01-02T03:04:05.000Z"

_DECIMAL = st.decimals(-(10**12), 10**12, places=3, allow_nan=False).map(str)
_NUMBERISH = st.one_of(
    _DECIMAL,
    _DECIMAL,
    _DECIMAL,
    st.integers(-(10**25), 10**25).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0.0", "1.50", "1e-7", "0.00001", "-0", "1e400", "12,5", " 3 ", "NaN", "Infinity", "abc"]),
)
_CELLS: dict[str, Any] = {
    "Id": st.sampled_from(
        [ID] * 8 + ["001000000000001", "001000000000001aaa", "001000000000001AAB", "003000000000001AAA"]
    ),
    "IsDeleted": st.sampled_from(["true", "false", "TRUE", "1", "yes"]),
    "Name": st.text(max_size=8),
    "ParentId": st.sampled_from(["001000000000002", "001000000000002AAA", "short", "x" * 15]),
    "AnnualRevenue": _NUMBERISH,
    "NumberOfEmployees": _NUMBERISH,
    "Rate__c": _NUMBERISH,
    "Active__c": st.sampled_from(["true", "false", "maybe"]),
    "Since__c": st.sampled_from(["2025-06-30"] * 3 + ["2025-06-30T10:00:00Z", "2025-13-01", " 2025-06-30", "x"]),
    "Opens__c": st.sampled_from(["10:00:00.000Z", "10:00", "25:00", "x"]),
    "CreatedDate": st.sampled_from(
        ["2024-01-02T03:04:05.000Z", "2024-01-02T03:04:05+02:00", " 2024-01-02T03:04:05.000Z"]
    ),
    "SystemModstamp": st.sampled_from(
        ["2024-01-02T03:04:05.000Z"] * 3 + ["2024-01-02T03:04:05.1234567Z", "not a time"]
    ),
    "Score__c": _NUMBERISH,
    "BillingStreet": st.text(max_size=8),
    "BillingLatitude": _NUMBERISH,
    "BillingLongitude": _NUMBERISH,
    "Hq__Latitude__s": _NUMBERISH,
    "Hq__Longitude__s": _NUMBERISH,
}


def _page(columns: list[str], scope: list[str]) -> tuple[Any, Any, domain.Selection, tuple[str, ...]]:
    infos = [FieldInfo(n, sf) for n, sf, _t, _c in FIELDS if n in scope]
    sel = domain.select_fields(infos, {k: v for k, v in COMPONENTS.items()})
    drop = domain.components_to_drop(sel, scope)
    canon = RecordCanonicalizer(SCHEMA)
    decode = domain.csv_decoder(columns, sel, drop)
    compiled = canon.compile_rows(columns, domain.csv_typing(columns, sel), sel.compounds, drop)
    return canon, compiled, decode, drop


def _outcome(fn: Any) -> Any:
    try:
        return fn()
    except InvalidArgument as exc:
        return ("refused", str(exc))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from([n for n in _CELLS if n != "Id"]), unique=True).flatmap(
        lambda cols: st.tuples(
            st.permutations(["Id", *cols]),
            st.fixed_dictionaries({"Id": _CELLS["Id"], **{n: st.one_of(st.just(""), _CELLS[n]) for n in cols}}),
            st.sets(st.sampled_from(["BillingStreet", "BillingLatitude", "Hq__Latitude__s", "Hq__Longitude__s"])),
        )
    )
)
def test_compiled_rows_give_what_the_record_gives(case: tuple[list[str], dict[str, str], set[str]]) -> None:
    columns, cells, out_of_scope = case
    # the page selects what the scope needs: components of a compound in scope come along (and are dropped)
    scope = [n for n, *_ in FIELDS if n not in out_of_scope]
    canon, compiled, decode, _drop = _page(columns, scope)
    assert compiled is not None
    row = [cells[c] for c in columns]
    reference = _outcome(lambda: canon.parts(decode(row), 7))
    got = _outcome(lambda: compiled(row, 7))
    if got is None or (isinstance(got, tuple) and got[0] == "refused"):
        # not taken (risky for orjson) or refused: the caller reads that row the reference way
        event("left to the record")
        return
    event("taken")
    assert got == reference


def test_a_row_of_real_shape_is_taken_and_matches() -> None:
    columns = [n for n, *_ in FIELDS if n not in ("BillingAddress", "Hq__c")]
    canon, compiled, decode, drop = _page(columns, [n for n, *_ in FIELDS if n != "BillingLatitude"])
    assert compiled is not None and drop == ("BillingLatitude",)
    row = [
        ID, "false", "Acme", "001000000000002AAA", "1200.50", "12", "", "true", "2025-06-30", "", TS,
        "2024-01-02T03:04:06.000Z", "3.0", "1 Main St\nSuite 2", "48.85", "", "", "",
    ]  # fmt: skip
    got = compiled(row, 0)
    assert got is not None and got == canon.parts(decode(row), 0)
    assert got.values.startswith(b'{"Active__c":true,"AnnualRevenue":1200.5,"BillingAddress":{"latitude":48.85,')
    assert b"BillingLatitude" not in got.values and b"Hq__c" not in got.values  # dropped; all components empty
    assert got.system_modstamp == "2024-01-02T03:04:06.000Z" and b"Score__c" in got.other_values


@pytest.mark.parametrize(
    ("columns", "why"),
    [
        (["Id", "Name", "Name"], "a name twice"),
        (["Id", "name"], "a name not spelled as in the schema"),
        (["Id", "Unknown__c"], "a name not in the schema"),
        (["Id", "BillingAddress"], "a compound as a column"),
    ],
)
def test_headers_it_cannot_compile_go_through_the_record(columns: list[str], why: str) -> None:
    _canon, compiled, _decode, _drop = _page(columns, [n for n, *_ in FIELDS])
    assert compiled is None, why


def test_rows_of_another_length_and_risky_values_are_left_to_the_record() -> None:
    canon, compiled, decode, _drop = _page(["Id", "Name", "Rate__c"], ["Id", "Name", "Rate__c"])
    assert compiled is not None
    assert compiled([ID, "x"], 0) is None  # a short row: the record reading decides what it means
    assert compiled([ID, "x", "1", "extra"], 0) is None
    assert compiled([ID, "x", "1e-7"], 0) is None  # orjson would write a tiny float otherwise than json does
    assert canon.parts(decode([ID, "x", "1e-7"]), 0).values == b'{"Id":"001000000000001AAA","Name":"x","Rate__c":1e-07}'


def test_a_compound_with_two_components_of_one_key_goes_through_the_record() -> None:
    # the record reading keeps the last of them (and omits the compound when that one is empty)
    canon = RecordCanonicalizer(SCHEMA)
    compounds = {"Hq__c": (("latitude", "Hq__Latitude__s"), ("latitude", "Rate__c"))}
    typing = [None, float, float]
    assert canon.compile_rows(["Id", "Hq__Latitude__s", "Rate__c"], typing, compounds) is None
