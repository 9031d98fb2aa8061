"""Pure rules: windows and marks, keyset resume positions (ties), SOQL, CSV typing and compound fields."""

from __future__ import annotations

import csv
import datetime as dt
import io

from services.jobrunner import domain
from services.jobrunner.domain import FieldInfo, Key, ObjectMarks

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def plan(marks: ObjectMarks, **kw: object) -> domain.Plan:
    args: dict[str, object] = {
        "full": False,
        "cursor": "SystemModstamp",
        "replicateable": True,
        "reconcile_every": None,
    }
    args.update(kw)
    return domain.plan_data_job(marks, NOW, **args)  # type: ignore[arg-type]


def recent(mark: dt.datetime) -> ObjectMarks:
    return ObjectMarks(
        mark=mark, last_full=NOW - dt.timedelta(days=1), last_reconcile=NOW - dt.timedelta(days=1), last_success=mark
    )


def test_first_copy_is_full_without_reconciliation_and_ends_behind_the_clock() -> None:
    p = plan(ObjectMarks())
    assert p.mode == "full" and not p.reconcile and p.start is None
    assert p.end == NOW - domain.SETTLE


def test_window_starts_an_overlap_before_the_mark_and_ends_a_settle_margin_before_now() -> None:
    mark = NOW - dt.timedelta(hours=1)
    p = plan(recent(mark))
    assert p.mode == "incremental"
    assert p.start == mark - domain.OVERLAP
    assert p.end == NOW - domain.SETTLE
    assert p.deleted_since == p.start
    assert domain.advance_mark(mark, p) == p.end


def test_the_mark_never_moves_backwards_and_a_window_never_inverts() -> None:
    mark = NOW + dt.timedelta(minutes=1)  # the org's clock went back
    p = plan(recent(mark))
    assert p.start is not None and p.start <= p.end
    assert domain.advance_mark(mark, p) == mark


def test_reconciliation_when_due_or_after_a_gap_longer_than_the_recycle_bin() -> None:
    mark = NOW - dt.timedelta(hours=1)
    due = ObjectMarks(mark=mark, last_reconcile=NOW - dt.timedelta(days=8), last_success=mark)
    assert plan(due).mode == "full" and plan(due).reconcile
    assert plan(due, reconcile_every=dt.timedelta(days=30)).mode == "incremental"
    gap = ObjectMarks(
        mark=NOW - dt.timedelta(days=16),
        last_reconcile=NOW - dt.timedelta(days=1),
        last_success=NOW - dt.timedelta(days=16),
    )
    p = plan(gap, reconcile_every=dt.timedelta(days=30))
    assert p.mode == "full" and p.reconcile and "15 days" in p.reason


def test_full_when_asked_or_without_system_modstamp_and_no_delete_log_when_not_replicateable() -> None:
    mark = NOW - dt.timedelta(hours=1)
    assert plan(recent(mark), full=True).mode == "full"
    assert plan(recent(mark), cursor="").mode == "full"
    assert plan(recent(mark), replicateable=False).deleted_since is None


def test_a_tie_is_resumed_after_the_last_id_never_after_the_timestamp() -> None:
    key = Key("2026-05-01T10:00:00.000+0000", "001000000000123AAA")
    cond = domain.keyset_condition(key)
    assert cond == (
        "(SystemModstamp > 2026-05-01T10:00:00.000Z OR "
        "(SystemModstamp = 2026-05-01T10:00:00.000Z AND Id > '001000000000123AAA'))"
    )
    soql = domain.build_soql("Account", ["Id"], start=NOW, end=NOW, after=key, ordered="modstamp")
    assert soql.endswith("ORDER BY SystemModstamp, Id") and cond in soql
    assert domain.keyset_condition(Key(None, "001x")) == "Id > '001x'"


def test_keyset_pagination_over_a_50000_row_tie_loses_nothing() -> None:
    # every row shares one SystemModstamp; pages cut the tie anywhere and resume after the last Id
    stamp = "2026-05-01T10:00:00.000Z"
    rows = sorted((stamp, f"001{n:015d}") for n in range(50_000))
    seen: list[str] = []
    after: Key | None = None
    while True:
        page = [r for r in rows if after is None or (r[0], r[1]) > (after.modstamp, after.record_id)][:1999]
        if not page:
            break
        seen.extend(r[1] for r in page)
        after = domain.key_of({"Id": page[-1][1], "SystemModstamp": page[-1][0]}, "modstamp")
    assert seen == [r[1] for r in rows]


def test_csv_cells_are_typed_as_rest_returns_them() -> None:
    assert domain.csv_value("boolean", "true") is True
    assert domain.csv_value("boolean", "false") is False
    assert domain.csv_value("int", "0.0") == 0
    assert domain.csv_value("int", "42") == 42
    assert domain.csv_value("currency", "3447141.0") == 3447141.0
    assert domain.csv_value("double", "") is None
    assert domain.csv_value("string", "NA") == "NA"  # never coerced to null
    assert domain.csv_value("date", "2025-01-24") == "2025-01-24"


def test_compound_fields_are_rebuilt_from_their_components() -> None:
    components = {
        "BillingCity": "BillingAddress",
        "BillingLatitude": "BillingAddress",
        "BillingPostalCode": "BillingAddress",
        "Hq__Latitude__s": "Hq__c",
        "Hq__Longitude__s": "Hq__c",
    }
    fields = [
        FieldInfo("Id", "id"),
        FieldInfo("BillingCity", "string"),
        FieldInfo("BillingLatitude", "double"),
        FieldInfo("BillingAddress", "address"),
        FieldInfo("Hq__c", "location"),
        FieldInfo("Photo__c", "base64"),
    ]
    sel = domain.select_fields(fields, components)
    assert "BillingAddress" in sel.rest_fields and "BillingAddress" not in sel.bulk_fields
    assert "Photo__c" not in sel.rest_fields
    assert {"BillingPostalCode", "Hq__Latitude__s", "Hq__Longitude__s"} <= set(sel.bulk_fields)
    drop = domain.components_to_drop(sel, [f.name for f in fields])
    csv_text = (
        '"Id","BillingCity","BillingLatitude","BillingPostalCode","Hq__Latitude__s","Hq__Longitude__s"\n'
        '"001000000000001AAA","Paris","1.5","75001","",""\n'
    )
    header, row = csv.reader(io.StringIO(csv_text))
    rec = domain.csv_decoder(header, sel, drop)(row)
    assert rec["BillingAddress"] == {"city": "Paris", "latitude": 1.5, "postalCode": "75001"}
    assert rec["Hq__c"] is None
    assert "BillingPostalCode" not in rec and "Hq__Latitude__s" not in rec


def test_component_keys() -> None:
    assert domain.component_key("ShippingGeocodeAccuracy") == "geocodeAccuracy"
    assert domain.component_key("MailingStateCode") == "stateCode"
    assert domain.component_key("Headquarters__Longitude__s") == "longitude"


def test_counts_must_match() -> None:
    domain.check_counts("x", 3, 3)
    try:
        domain.check_counts("x", 3, 2)
    except domain.CountMismatch as exc:
        assert "3" in str(exc) and "2" in str(exc)
    else:
        raise AssertionError("a mismatch must fail")


def test_the_window_field_is_the_first_the_object_has() -> None:
    assert domain.cursor_field(["Id", "systemmodstamp", "LastModifiedDate", "CreatedDate"]) == "SystemModstamp"
    assert domain.cursor_field(["Id", "LastModifiedDate", "CreatedDate"]) == "LastModifiedDate"
    # field history, feeds: append-only, CreatedDate only
    assert domain.cursor_field(["Id", "ParentId", "Field", "OldValue", "NewValue", "CreatedDate"]) == "CreatedDate"
    assert domain.cursor_field(["Id", "Name"]) == ""


def test_an_object_with_only_created_date_is_read_by_a_window_on_it() -> None:
    mark = NOW - dt.timedelta(hours=1)
    p = plan(recent(mark), cursor="CreatedDate", replicateable=False)
    assert p.mode == "incremental" and p.cursor == "CreatedDate" and "CreatedDate" in p.reason
    soql = domain.build_soql(
        "AccountHistory",
        ["Id", "CreatedDate"],
        start=p.start,
        end=p.end,
        after=Key("2026-01-01T00:00:00.000Z", "017x"),
        ordered="modstamp",
        cursor=p.cursor,
    )
    assert "SystemModstamp" not in soql
    assert "CreatedDate >= " in soql and "CreatedDate <= " in soql and soql.endswith("ORDER BY CreatedDate, Id")
    assert (
        "(CreatedDate > 2026-01-01T00:00:00.000Z OR (CreatedDate = 2026-01-01T00:00:00.000Z AND Id > '017x'))" in soql
    )
    assert domain.key_of({"Id": "017x", "CreatedDate": "2026-01-02T00:00:00.000Z"}, "modstamp", p.cursor) == Key(
        "2026-01-02T00:00:00.000Z", "017x"
    )
    assert plan(recent(mark), cursor="").reason == "no field to window on"


def test_a_query_fits_a_rest_request_line_up_to_its_url_encoded_length() -> None:
    wide = "SELECT " + ", ".join(f"Field_{n}__c" for n in range(1000)) + " FROM Wide__c"
    assert domain.rest_fits("SELECT Id, Name FROM Account")
    assert not domain.rest_fits(wide)
    assert domain.rest_fits("x" * domain.REST_LINE_LIMIT)
    assert not domain.rest_fits("," * (domain.REST_LINE_LIMIT // 3 + 1))  # each "%2C"
