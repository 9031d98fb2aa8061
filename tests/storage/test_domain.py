"""Unit tests of the storage rules: Ids, names, canonical records, what counts as a change (no I/O)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.canonical import (
    CanonicalRecord,
    _legacy_loads,
    content_hash,
    join_values,
    values_hash,
)
from services.storage.domain import (
    ChunkDigest,
    Deleted,
    FieldDef,
    FieldType,
    InvalidArgument,
    ObjectSchema,
    RecordCanonicalizer,
    check_api_name,
    classify,
    id_suffix,
    normalize_id,
    normalize_org_id,
)

ACCOUNT = ObjectSchema(
    "Account",
    (
        FieldDef("Id", FieldType.ID),
        FieldDef("Name", FieldType.STRING),
        FieldDef("AnnualRevenue", FieldType.DOUBLE),
        FieldDef("NumberOfEmployees", FieldType.INTEGER),
        FieldDef("IsDeleted", FieldType.BOOLEAN),
        FieldDef("Active__c", FieldType.BOOLEAN),
        FieldDef("CreatedDate", FieldType.DATETIME),
        FieldDef("LastModifiedDate", FieldType.DATETIME),
        FieldDef("SystemModstamp", FieldType.DATETIME),
        FieldDef("SLAExpirationDate__c", FieldType.DATE),
        FieldDef("OpenTime__c", FieldType.TIME),
        FieldDef("ParentId", FieldType.ID),
        FieldDef("BillingAddress", FieldType.COMPOUND),
        FieldDef("Score__c", FieldType.DOUBLE, calculated=True),
    ),
    key_prefix="001",
)
ID = "001000000000001AAA"


def canon(record: dict[str, object], **kw: bool):  # type: ignore[no-untyped-def]
    return RecordCanonicalizer(ACCOUNT, **kw).canonicalize(json.dumps(record).encode())


# --- Ids -------------------------------------------------------------------------------------------------


def test_id_checksum_matches_salesforce_examples() -> None:
    # well-known pairs from Salesforce documentation and orgs
    assert normalize_id("001000000000001") == ID
    assert id_suffix("00D000000000062") == "EAA"
    assert normalize_id("00D000000000062EAA") == "00D000000000062EAA"
    assert normalize_id("0015000000VALDt") == "0015000000VALDtAAP"


def test_18_character_ids_are_case_insensitive_in_their_suffix_only() -> None:
    assert normalize_id("0015000000VALDtaap") == "0015000000VALDtAAP"
    with pytest.raises(InvalidArgument, match="checksum"):
        normalize_id("0015000000VALDtAAA")
    with pytest.raises(InvalidArgument, match="checksum"):
        normalize_id("0015000000valdtAAP")  # another record: case of the first 15 matters


@pytest.mark.parametrize("bad", ["", "001", "00100000000000!", "001000000000001AA", 12, None, "0" * 19])
def test_malformed_ids_are_rejected_with_a_message(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="not a Salesforce Id"):
        normalize_id(bad)


def test_org_ids_start_with_00d() -> None:
    assert normalize_org_id("00D000000000062") == "00D000000000062EAA"
    with pytest.raises(InvalidArgument, match="00D"):
        normalize_org_id(ID)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=15, max_size=15))
def test_every_15_character_id_round_trips_to_a_valid_18(id15: str) -> None:
    id18 = normalize_id(id15)
    assert len(id18) == 18 and id18[:15] == id15
    assert normalize_id(id18) == id18
    assert normalize_id(id18.lower() if id15 == id15.lower() else id18) == id18


@pytest.mark.parametrize(
    "name", ["Account", "My_Object__c", "ns__My_Object__c", "Account__History", "Event__e", "Setting__mdt", "X1"]
)
def test_api_names(name: str) -> None:
    assert check_api_name(name) == name


@pytest.mark.parametrize("name", ["", "1Account", "Account c", "Acc.ount", "_Account", "Account_", "a;drop", "x" * 300])
def test_bad_api_names(name: str) -> None:
    with pytest.raises(InvalidArgument):
        check_api_name(name)


# --- what counts as a change -------------------------------------------------------------------------------

BASE = {
    "Id": ID,
    "Name": "Acme",
    "AnnualRevenue": 1000.5,
    "NumberOfEmployees": 12,
    "Active__c": True,
    "CreatedDate": "2024-01-02T03:04:05.000Z",
    "LastModifiedDate": "2024-03-01T00:00:00.000Z",
    "SystemModstamp": "2024-03-01T00:00:00.000Z",
    "SLAExpirationDate__c": "2025-06-30",
    "Score__c": 7,
}


def test_field_order_does_not_matter() -> None:
    reordered = dict(reversed(list(BASE.items())))
    assert canon(reordered).hash == canon(BASE).hash


def test_number_date_and_boolean_formatting_does_not_matter() -> None:
    formatted = {
        **BASE,
        "AnnualRevenue": "1000.50",
        "NumberOfEmployees": "12.0",
        "Active__c": "true",
        "CreatedDate": "2024-01-02T04:04:05.000+0100",
        "Id": ID[:15],
        "attributes": {"type": "Account", "url": "/services/data/v62.0/sobjects/Account/x"},
    }
    assert canon(formatted).hash == canon(BASE).hash
    assert canon({**BASE, "AnnualRevenue": 1e3}).hash == canon({**BASE, "AnnualRevenue": "1000"}).hash
    assert canon({**BASE, "CreatedDate": 1704164645000}).hash == canon(BASE).hash  # Bulk 1.0 epoch millis


def test_null_and_empty_and_absent_are_the_same() -> None:
    assert canon({**BASE, "Name": ""}).hash == canon({**BASE, "Name": None}).hash
    without = {k: v for k, v in BASE.items() if k != "Name"}
    assert canon(without).hash == canon({**BASE, "Name": None}).hash
    assert canon(without).hash != canon(BASE).hash


def test_only_audit_fields_moved_is_unchanged() -> None:
    moved = {**BASE, "SystemModstamp": "2024-05-05T00:00:00.000Z", "LastModifiedDate": "2024-05-05T00:00:00.000Z"}
    assert canon(moved).hash == canon(BASE).hash
    assert json.loads(canon(moved).values_json)["SystemModstamp"] == "2024-05-05T00:00:00.000Z"
    assert canon(moved).system_modstamp == "2024-05-05T00:00:00.000Z"


def test_formula_fields_are_stored_but_not_a_change_unless_asked() -> None:
    recalculated = {**BASE, "Score__c": 8}
    assert canon(recalculated).hash == canon(BASE).hash
    assert json.loads(canon(recalculated).values_json)["Score__c"] == 8
    assert canon(recalculated, count_formula_changes=True).hash != canon(BASE, count_formula_changes=True).hash


@pytest.mark.parametrize(
    "change", [{"Name": "Acme Inc"}, {"AnnualRevenue": 1000.51}, {"Active__c": False}, {"CreatedDate": None}]
)
def test_real_changes_change_the_hash(change: dict[str, object]) -> None:
    assert canon({**BASE, **change}).hash != canon(BASE).hash


def test_soft_deleted_records_are_flagged() -> None:
    assert canon({**BASE, "IsDeleted": True}).deleted == Deleted.SOFT
    assert canon({**BASE, "IsDeleted": "false"}).deleted == Deleted.LIVE


def test_stored_values_are_canonical_json_with_all_fields() -> None:
    values = json.loads(
        canon({**BASE, "OpenTime__c": "09:30:00Z", "BillingAddress": {"city": "X", "zip": None}}).values_json
    )
    assert values["AnnualRevenue"] == 1000.5 and values["NumberOfEmployees"] == 12
    assert values["OpenTime__c"] == "09:30:00.000Z"
    assert values["BillingAddress"] == {"city": "X", "zip": None}
    assert set(values) >= {"Score__c", "SystemModstamp", "LastModifiedDate"}


def test_nul_characters_are_dropped() -> None:
    assert "\\u0000" not in canon({**BASE, "Name": "Ac\x00me"}).values_json


@pytest.mark.parametrize(
    "text",
    ["\\u0000", "a\\u0000b\x00", "\\\x00", "\\\\u0000", "\x00\\u0000\x00", "\\\\\x00u0000", "\\"],
    ids=["text", "text-and-nul", "backslash-nul", "two-backslashes", "nul-text-nul", "backslashes-nul-u", "backslash"],
)
def test_nul_characters_are_dropped_and_nothing_else(text: str) -> None:
    # the text \u0000 (a backslash, then u0000) is written as \\u0000: not an escaped NUL, kept as it is
    values = json.loads(canon({**BASE, "Name": text}).values_json)
    assert values["Name"] == text.replace("\x00", "")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({**BASE, "Bogus__c": 1}, "not a field of Account"),
        ({**BASE, "NumberOfEmployees": "twelve"}, "NumberOfEmployees"),
        ({**BASE, "NumberOfEmployees": 1.5}, "not a valid integer"),
        ({**BASE, "CreatedDate": "yesterday"}, "CreatedDate"),
        ({**BASE, "Active__c": "maybe"}, "boolean"),
        ({k: v for k, v in BASE.items() if k != "Id"}, "has no Id"),
        ({**BASE, "Id": "003000000000001AAA"}, "key prefix"),
        ({**BASE, "Id": "001000000000001AAB"}, "checksum"),
    ],
)
def test_invalid_records_are_rejected_naming_the_problem(record: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        canon(record)


def test_field_names_are_matched_case_insensitively() -> None:
    assert canon({**{k.lower(): v for k, v in BASE.items()}}).hash == canon(BASE).hash


def test_not_json_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="record 3 is not valid JSON"):
        RecordCanonicalizer(ACCOUNT).canonicalize(b"{nope", 3)
    with pytest.raises(InvalidArgument, match="not a JSON object"):
        RecordCanonicalizer(ACCOUNT).canonicalize(b"[1]", 0)


def test_schema_validation_and_digest() -> None:
    ObjectSchema("Account", ACCOUNT.fields, "001").validate()
    assert ObjectSchema("Account", tuple(reversed(ACCOUNT.fields)), "001").digest() == ACCOUNT.digest()
    with pytest.raises(InvalidArgument, match="no Id field"):
        ObjectSchema("Account", (FieldDef("Name"),)).validate()
    with pytest.raises(InvalidArgument, match="twice"):
        ObjectSchema("Account", (FieldDef("Id"), FieldDef("id"))).validate()


def test_classify_counts_each_transition_once() -> None:
    counts = classify(10, [(True, Deleted.LIVE), (False, Deleted.LIVE), (False, Deleted.SOFT), (True, Deleted.SOFT)])
    assert (counts.new_versions, counts.changed, counts.deleted, counts.unchanged) == (2, 1, 1, 6)


def test_chunk_digest_separates_parts() -> None:
    a, b = ChunkDigest(), ChunkDigest()
    a.update(b"ab", b"c")
    b.update(b"a", b"bc")
    assert a.digest() != b.digest()


# --- the fast (orjson) path computes what the json module's path computes ------------------------------------

_ANY_FLOAT = st.floats(allow_nan=False, allow_infinity=False)
_NUMBERS = st.one_of(
    st.integers(min_value=-(10**25), max_value=10**25),
    _ANY_FLOAT,
    st.sampled_from([0.0, -0.0, 1e-05, 2.5e-7, 1.5e-300, 9.99e-5, 1e-4, 1e16, 1.2e20, 2.0**63, 2.0**64, 1e300]),
)
_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "e-", "1e-05", "0.00001", "true", "0", "Ac\x00me", "\u2028\x7f", "12345678901234567890123"]),
    _NUMBERS.map(str),
)
_JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), _NUMBERS, _TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
)
_FIELD_VALUES = {
    "Name": _JSONISH,
    "AnnualRevenue": st.one_of(_NUMBERS, _NUMBERS.map(str), _TEXT),
    "NumberOfEmployees": st.one_of(_NUMBERS, _NUMBERS.map(str)),
    "IsDeleted": st.one_of(st.booleans(), st.sampled_from(["true", "false", 1, 0, 2.0, 10**20])),
    "Active__c": st.one_of(st.booleans(), _TEXT),
    "CreatedDate": st.one_of(st.sampled_from(["2024-01-02T03:04:05.000Z", "2024-01-02T03:04:05+02:00"]), _NUMBERS),
    "SLAExpirationDate__c": st.sampled_from(["2025-06-30", "2025-06-30T10:00:00Z", "2025-13-01", 1704164645000]),
    "ParentId": st.one_of(st.sampled_from(["001000000000001", "001000000000001AAA"]), _JSONISH),
    "BillingAddress": _JSONISH,
    "Score__c": _NUMBERS,
}


def _both_paths(c: RecordCanonicalizer, raw: bytes) -> tuple[object, object]:
    def run(fn):  # type: ignore[no-untyped-def]
        try:
            r = fn()
            return (r.record_id, r.data, r.hash, r.system_modstamp, r.deleted)
        except InvalidArgument as exc:
            return ("refused", str(exc))

    def from_parts(fast: bool) -> CanonicalRecord:
        obj = _legacy_loads(raw, 0)
        p = c._parts(obj, 0, fast=False) if not fast else c.parts(obj)
        assert p is not None
        stored = join_values(p.values, p.other_values)
        return CanonicalRecord(p.record_id, stored, content_hash(p.values), p.system_modstamp, p.deleted)

    reference = run(lambda: from_parts(False))
    # what a jobrunner sends (parts of the record parsed by the json module) is what storage makes of the bytes
    assert run(lambda: from_parts(True)) == reference
    return run(lambda: c.canonicalize(raw, 0, b"")), reference


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=_FIELD_VALUES))
# two keys of a nested object that differ only by a NUL: one key once stripped (the text hashed had it twice)
@example(extra={"Name": {"0": None, "0\x00": None}})
@example(extra={"Name": {"a\x00z": 1, "ab": 2}})  # a key that sorts elsewhere once stripped
def test_fast_canonical_form_equals_the_json_modules(extra: dict[str, object]) -> None:
    c = RecordCanonicalizer(ACCOUNT)
    raw = json.dumps({"Id": ID, **extra}).encode()
    fast, reference = _both_paths(c, raw)
    assert fast == reference
    if reference[0] != "refused":  # the hash again from the stored JSON's hashed values (rehash_rules_1_heads)
        stored = json.loads(reference[1])  # type: ignore[arg-type]
        assert values_hash({k: v for k, v in stored.items() if k in c.hashed_fields}) == reference[2]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"Id": "001000000000001AAA", "Name": NaN}',
        b'{"Id": "001000000000001AAA", "Name": 1e400}',
        b'{"Id": "001000000000001AAA", "Name": "\\ud800"}',
        b'\xef\xbb\xbf{"Id": "001000000000001AAA", "Name": "bom"}',
        '{"Id": "001000000000001AAA", "Name": "utf-16"}'.encode("utf-16"),
        b'{"Id": "001000000000001AAA", "Name": "x", "Name": "duplicate"}',
        b'{"Id": "001000000000001AAA", "NumberOfEmployees": 123456789012345678901234567890}',
        b'{"Id": "001000000000001AAA", "AnnualRevenue": "0.00001", "Score__c": 1.5e-9}',
    ],
)
def test_what_orjson_reads_otherwise_takes_the_json_modules_path(raw: bytes) -> None:
    fast, reference = _both_paths(RecordCanonicalizer(ACCOUNT), raw)
    assert fast == reference


def test_a_refused_value_is_described_never_quoted() -> None:
    # error messages reach logs and callers; record contents never do
    c = RecordCanonicalizer(ACCOUNT)
    secret = "confidential-salary-figure"
    with pytest.raises(InvalidArgument, match="NumberOfEmployees") as refused:
        c.canonicalize(json.dumps({"Id": ID, "NumberOfEmployees": secret}).encode())
    assert secret not in str(refused.value) and f"{len(secret)} characters" in str(refused.value)


def test_rescope_carries_fields_out_of_scope_and_tells_a_scope_only_difference() -> None:
    from services.canonical import values_hash
    from services.storage.domain import HeadState, Scope, rescope

    rid = "001000000000001AAA"
    then = Scope(frozenset({"Id", "Name", "Secret", "SystemModstamp"}), frozenset({"Id", "Name", "Secret"}))
    now = Scope(frozenset({"Id", "Name", "Phone", "SystemModstamp"}), frozenset({"Id", "Name", "Phone"}))
    unhashed = frozenset({"SystemModstamp"})
    last = {"Id": rid, "Name": "A", "Secret": 7, "SystemModstamp": "2024-01-01T00:00:00.000Z"}
    head = HeadState(rid, values_hash({"Id": rid, "Name": "A", "Secret": 7}), 0, 1, json.dumps(last))

    def record(**values: object) -> CanonicalRecord:
        data = {"Id": rid, **values}
        core = {k: v for k, v in data.items() if k in now.hashed}
        return CanonicalRecord(rid, json.dumps(data).encode(), values_hash(core), None, Deleted.LIVE)

    same, quiet = rescope(record(Name="A"), head, now, then, unhashed)  # Secret hidden: carried, no change
    assert same.hash == head.hash and not quiet and json.loads(same.data)["Secret"] == 7
    joined, quiet = rescope(record(Name="A", Phone="5"), head, now, then, unhashed)  # only a new field's value
    assert quiet and joined.hash != head.hash
    assert json.loads(joined.data) == {"Id": rid, "Name": "A", "Secret": 7, "Phone": "5"}
    changed, quiet = rescope(record(Name="B", Phone="5"), head, now, then, unhashed)  # and a real change
    assert not quiet and changed.hash != head.hash
    _gone, quiet = rescope(record(Name="A", Phone="5")._replace(deleted=Deleted.SOFT), head, now, then, unhashed)
    assert not quiet  # a deleted state that changed is a change


# --- a chunk of canonical columns (prepare_chunk, RecordsChunk): pure, no I/O ---------------------------------


def _columns(parts: list[object]) -> object:
    from types import SimpleNamespace

    from services.canonical import column_bytes

    return SimpleNamespace(**dict(column_bytes(parts)))  # type: ignore[arg-type]


def test_a_chunk_is_hashed_fingerprinted_and_built_as_the_one_canonicaliser_says() -> None:
    from services.canonical import CanonicalParts
    from services.storage.domain import canonical_print, prepare_chunk

    c = RecordCanonicalizer(ACCOUNT)
    raws = [{"Id": ID, "Name": "a"}, {"Id": ID[:15], "Name": "b", "IsDeleted": True}]
    parts = [c.parts(r, i) for i, r in enumerate(raws)]
    chunk = prepare_chunk(_columns(parts), "Account", c, check_every=1)  # type: ignore[arg-type]
    assert list(chunk.ids) == [ID, ID] and len(chunk) == 2
    [record] = chunk.records([0, 1]).values()  # one per Id: the last occurrence
    assert record == c.canonicalize(json.dumps(raws[1]).encode(), 1, chunk.prints[1])
    assert chunk.prints[1] == canonical_print(content_hash(parts[1].values), 1, parts[1].other_values)
    same = prepare_chunk(_columns(parts), "Account", c, check_every=1)  # type: ignore[arg-type]
    other = [parts[0], CanonicalParts(*parts[1][:2], b'{"x":1}', *parts[1][3:])]
    assert same.digest == chunk.digest != prepare_chunk(_columns(other), "Account", c, check_every=1).digest  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("column", "line", "message"),
    [
        ("record_ids", b"001000000000001aaa", r"record 1 Id \(a str of 18 characters\) is not an 18-character Id"),
        ("values", b'{"Name":"x"', r"record 1 \(.*\): its values are not a canonical JSON object"),
        ("system_modstamps", b"2024-01-02 03:04:05", r"record 1 \(.*\): system_modstamp \(of 19 characters\)"),
    ],
)
def test_a_chunk_refused_names_the_record_at_fault(column: str, line: bytes, message: str) -> None:
    from services.storage.domain import prepare_chunk

    c = RecordCanonicalizer(ACCOUNT)
    parts = [c.parts({"Id": ID, "Name": "a"}), c.parts({"Id": ID[:14] + "2", "Name": "b"})]
    columns = _columns(parts)
    lines = getattr(columns, column).split(b"\n")
    lines[1] = line
    setattr(columns, column, b"\n".join(lines))
    with pytest.raises(InvalidArgument, match=message):
        prepare_chunk(columns, "Account", c, check_every=1)  # type: ignore[arg-type]
