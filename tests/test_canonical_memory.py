"""A record's canonical parts hold about their own size: a jobrunner keeps ten thousand of them per chunk."""

from __future__ import annotations

import tracemalloc

from services.canonical import FieldDef, FieldType, ObjectSchema, RecordCanonicalizer

SCHEMA = ObjectSchema(
    "Thing__c",
    (
        FieldDef("Id", FieldType.ID),
        FieldDef("Name", FieldType.STRING),
        FieldDef("Amount__c", FieldType.DOUBLE),
        FieldDef("SystemModstamp", FieldType.DATETIME),
        FieldDef("Total__c", FieldType.DOUBLE, True),
    ),
    "a01",
)


def test_parts_of_a_thousand_records_hold_about_their_bytes() -> None:
    canon = RecordCanonicalizer(SCHEMA)
    records = [
        {
            "Id": f"a01{n:012d}AAA",
            "Name": f"thing {n} " + "x" * 300,
            "Amount__c": n * 1.5,
            "SystemModstamp": "2024-01-02T03:04:05.000Z",
            "Total__c": n * 3.0,
        }
        for n in range(1000)
    ]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        parts = [canon.parts(r) for r in records]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    payload = sum(len(p.values) + len(p.other_values) for p in parts)
    assert parts[0].values.startswith(b'{"Amount__c":0') and b"Total__c" in parts[0].other_values
    # the bytes themselves, the tuples and strings around them; not a writer's buffer per value
    assert held < 2 * payload, (held, payload)
