"""Sensitive fields (issue 18): values sealed with the org's value key (AES-256-GCM, wrapped by the KEK) and keyed
hashes; the pure parts, then a real PostgreSQL: no plaintext of a sensitive field in any table, reads (as of a
point, history, export, ReadRecordsAsOf) give it back, compare finds the change by keyed hash, the same value again
is no new version, a schema with sensitive fields is refused without a key, and rewrap covers the value keys."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from services.platform.auth import Principal
from services.platform.encryption import KEY_SETTING, Keyring, kek_id_of
from services.platform.errors import FailedPrecondition
from services.storage.application import Storage
from services.storage.application_sensitive import SensitiveValues
from services.storage.domain import FieldDef, FieldType, ObjectSchema, RecordSelection
from services.storage.rewrap import rewrap
from services.storage.sensitive import (
    TOKEN,
    FieldSealer,
    ValueDamaged,
    ValueKey,
    compared_values,
    open_json,
    sealed,
    token_hashes,
)
from tests.storage.conftest import DATA, ORG, Harness, put_raw, sf_id

KEK1 = bytes(range(32))
KEK2 = bytes(range(100, 132))
CONTACT = ObjectSchema(
    "Contact",
    (
        FieldDef("Id", FieldType.ID),
        FieldDef("LastName", FieldType.STRING),
        FieldDef("Email", FieldType.STRING, sensitive=True),
        FieldDef("Birth__c", FieldType.DATE, sensitive=True),
    ),
    key_prefix="003",
)
EMAILS = ["alice.secret@example.org", "bob.secret@example.org", "carol.secret@example.org"]


def contact(n: int, last: str, email: str | None) -> bytes:
    return json.dumps(
        {"Id": sf_id("003", n), "LastName": last, "Email": email, "Birth__c": "1980-02-0" + str(n)}
    ).encode()


# --- pure --------------------------------------------------------------------------------------------------------


def test_a_sealed_value_opens_only_in_its_field_and_hashes_equal_for_equal_values() -> None:
    key = ValueKey(os.urandom(32))
    one, two = key.seal("Contact", "Email", "a@x.org"), key.seal("Contact", "Email", "a@x.org")
    assert one != two and "a@x.org" not in json.dumps(one)  # a random nonce each time
    assert token_hashes(one[TOKEN]) == token_hashes(two[TOKEN])  # equal values: equal keyed hashes
    assert token_hashes(key.seal("Contact", "Email", "b@x.org")[TOKEN])[0] != token_hashes(one[TOKEN])[0]
    # erasure's search hash compares as erasure does: trimmed, case-insensitive; equality does not
    upper = key.seal("Contact", "Email", " A@X.org")
    assert token_hashes(upper[TOKEN])[1] == token_hashes(one[TOKEN])[1]
    assert token_hashes(upper[TOKEN])[0] != token_hashes(one[TOKEN])[0]
    assert key.open("Contact", "Email", one[TOKEN]) == "a@x.org"
    assert key.open("contact", "EMAIL", one[TOKEN]) == "a@x.org"  # names are case-insensitive
    with pytest.raises(ValueDamaged, match=r"Contact\.Phone"):
        key.open("Contact", "Phone", one[TOKEN])  # moved to another field
    with pytest.raises(ValueDamaged):
        ValueKey(os.urandom(32)).open("Contact", "Email", one[TOKEN])  # another org's key
    assert compared_values({"Email": one}) == compared_values({"Email": two})


def test_a_records_values_are_sealed_field_by_field_and_opened_back() -> None:
    key = ValueKey(os.urandom(32))
    sealer = FieldSealer(key, "Contact", ("Email", "Birth__c"))
    data = b'{"Birth__c":"1980-02-01","Email":"a@x.org","Id":"003000000000001AAA","LastName":"O\'Neil \\"x\\""}'
    out = sealer.seal_json(data)
    assert b"a@x.org" not in out and b"1980-02-01" not in out and b"O'Neil" in out
    values = json.loads(out)
    assert sealed(values["Email"]) and sealed(values["Birth__c"]) and values["LastName"] == 'O\'Neil "x"'
    assert json.loads(open_json(key, "Contact", out.decode())) == json.loads(data)
    plain = b'{"Id":"003000000000001AAA","LastName":"Email"}'
    assert sealer.seal_json(plain) is plain  # no sensitive field in it: left as it came, unparsed
    assert sealer.seal_json(out) == out or json.loads(sealer.seal_json(out)) == values  # never sealed twice


# --- real PostgreSQL --------------------------------------------------------------------------------------------


def _keyed(harness: Harness, keyring: Keyring | None) -> Storage:
    s = harness.storage
    s.sensitive = s.erasures.sensitive = SensitiveValues(harness.store, keyring)
    return s


async def _all_text(harness: Harness) -> str:
    """Every row of every table of storage's schema, as text."""
    async with harness.store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'storage' AND tablename <> 'schema_migrations'"
        )
        texts = []
        for (table,) in await cur.fetchall():
            rows = await conn.execute(f"SELECT t::text FROM storage.{table} t")
            texts += [r[0] for r in await rows.fetchall()]
    return "\n".join(texts)


async def _session(s: Storage, session: str, raws: list[bytes]) -> dict[str, int]:
    await s.begin_job(ORG, session, "jc", DATA, "Contact")
    await s.put_schema(ORG, session, CONTACT)
    outcome = await put_raw(s, ORG, session, "jc", 1, "Contact", raws)
    return outcome.result["counts"]  # type: ignore[no-any-return]


@pytest.mark.integration
async def test_a_schema_with_sensitive_fields_is_refused_without_a_key(harness: Harness) -> None:
    s = _keyed(harness, None)
    await s.begin_job(ORG, "s1", "jc", DATA, "Contact")
    with pytest.raises(FailedPrecondition, match=KEY_SETTING) as refused:
        await s.put_schema(ORG, "s1", CONTACT)
    assert "Contact.Email" in str(refused.value)
    assert await harness.count("object_schemas") == 0


@pytest.mark.integration
async def test_sensitive_values_are_never_in_clear_in_postgresql_and_every_read_opens_them(harness: Harness) -> None:
    s = _keyed(harness, Keyring(KEK1))
    first = await _session(s, "s1", [contact(n + 1, f"Name{n + 1}", e) for n, e in enumerate(EMAILS)])
    assert first["new_versions"] == 3
    t1 = dt.datetime.now(dt.UTC)
    # contact 1: a new e-mail; 2: the same values again; 3: its name only
    later = [
        contact(1, "Name1", "alice.new.secret@example.org"),
        contact(2, "Name2", EMAILS[1]),
        contact(3, "Three", EMAILS[2]),
    ]
    second = await _session(s, "s2", later)
    assert (second["changed"], second["unchanged"]) == (2, 1)
    t2 = dt.datetime.now(dt.UTC)
    # the same plaintext again: no new version (the hash is taken of the plaintext, never of the ciphertext)
    third = await _session(s, "s3", later)
    assert (third["changed"], third["unchanged"]) == (0, 3)
    assert await harness.count("record_versions") == 5

    stored = await _all_text(harness)
    for secret in [*EMAILS, "alice.new.secret", "secret@example", "1980-02-0"]:
        assert secret not in stored
    assert TOKEN in stored and "Name2" in stored  # sealed values; the others in clear

    # reads open them: as of a point, history, export, ReadRecordsAsOf
    then = await s.record_as_of(ORG, "Contact", sf_id("003", 1), t1)
    assert json.loads(then.values_json)["Email"] == EMAILS[0]
    history = await s.record_history(ORG, "Contact", sf_id("003", 1))
    assert [json.loads(v.values_json)["Email"] for v in history] == [EMAILS[0], "alice.new.secret@example.org"]
    csv = b"".join(
        [chunk async for chunk, _n in s.export_as_of(ORG, "Contact", t1, csv_format=True, include_deleted=False)]
    )
    assert all(e.encode() in csv for e in EMAILS) and b"1980-02-03" in csv and TOKEN.encode() not in csv
    batches = [b async for b in s.records_as_of(ORG, "Contact", t2, RecordSelection(all=True))]
    restored = {r.record_id: json.loads(r.values_json) for b in batches for r in b.records}
    assert restored[sf_id("003", 1)]["Email"] == "alice.new.secret@example.org"
    assert restored[sf_id("003", 2)]["Birth__c"] == "1980-02-02"
    assert all(f.sensitive == (f.name in ("Email", "Birth__c")) for f in batches[0].schema.fields)  # type: ignore[union-attr]
    # a restore's reads (as_stored): opened too
    lean = [b async for b in s.records_as_of(ORG, "Contact", t2, RecordSelection(all=True), as_stored=True)]
    assert {i: json.loads(text) for b in lean for i, text in b.bare} == restored

    # compare: the changed e-mail found by its keyed hash; the unchanged sealed values of contact 3 are no change
    pieces = [p async for p in s.compare_as_of(ORG, t1, t2)]
    found = {c.record_id: tuple(f.field for f in c.fields) for p in pieces for c in p.changes}
    assert found == {sf_id("003", 1): ("Email",), sf_id("003", 3): ("LastName",)}
    shown = [p async for p in s.compare_as_of(ORG, t1, t2, values=True)]
    (email,) = [f for p in shown for c in p.changes for f in c.fields if f.field == "Email"]
    assert (json.loads(email.old_json), json.loads(email.new_json)) == (EMAILS[0], "alice.new.secret@example.org")

    # without the key, nothing sealed is read (a clear FAILED_PRECONDITION), and no plaintext is ever written
    locked = _keyed(harness, None)
    with pytest.raises(FailedPrecondition, match=KEY_SETTING):
        await locked.record_as_of(ORG, "Contact", sf_id("003", 1), t1)


@pytest.mark.integration
async def test_rewrap_moves_the_value_keys_to_the_new_kek(harness: Harness) -> None:
    s = _keyed(harness, Keyring(KEK1))
    await _session(s, "s1", [contact(1, "Name1", EMAILS[0])])
    assert await rewrap(harness.store, Keyring(KEK2, [KEK1])) == 1
    assert await rewrap(harness.store, Keyring(KEK2, [KEK1])) == 0
    assert [k.kek_id for _o, k in await harness.store.value_keys_not_under(kek_id_of(KEK1))] == [kek_id_of(KEK2)]
    s = _keyed(harness, Keyring(KEK2))  # KEK1 retired
    version = await s.record_as_of(ORG, "Contact", sf_id("003", 1), None)
    assert json.loads(version.values_json)["Email"] == EMAILS[0]


@pytest.mark.integration
async def test_erasure_finds_a_sealed_value_by_its_keyed_search_hash(harness: Harness) -> None:
    s = _keyed(harness, Keyring(KEK1))
    await _session(s, "s1", [contact(n + 1, f"Name{n + 1}", e) for n, e in enumerate(EMAILS)])
    asked = " Bob.Secret@EXAMPLE.org"  # erasure compares trimmed and in any case
    for fields in (["Contact.Email"], []):
        found = await s.erasures.verify(ORG, asked, fields, "")
        assert found.versions_holding == 1 and found.samples == [f"Contact:{sf_id('003', 2)}"]
    assert (await s.erasures.verify(ORG, asked, ["Contact.LastName"], "")).versions_holding == 0
    erased = await s.erasures.erase(
        ORG, "", [], asked, ["contact.email"], "GDPR request", dry_run=False, eraser=Principal("alice", "admin", "t")
    )
    assert [r.record_id for r in erased.records] == [sf_id("003", 2)]
    assert (await s.erasures.verify(ORG, asked, [], "")).versions_holding == 0
    assert (await s.erasures.verify(ORG, EMAILS[0], ["Contact.Email"], "")).versions_holding == 1  # others kept


@pytest.mark.integration
async def test_a_sensitive_value_carried_across_a_change_of_scope_stays_sealed(harness: Harness) -> None:
    s = _keyed(harness, Keyring(KEK1))
    await _session(s, "s1", [contact(n + 1, f"Name{n + 1}", e) for n, e in enumerate(EMAILS)])
    # the e-mail hidden from the integration user: the re-read lacks it; record 3 renamed carries it along
    hidden = dataclasses.replace(CONTACT, fields=tuple(f for f in CONTACT.fields if f.name != "Email"))
    await s.begin_job(ORG, "s2", "jc", DATA, "Contact")
    await s.put_schema(ORG, "s2", hidden)
    raws = [json.dumps({k: v for k, v in json.loads(contact(n, name, None)).items() if k != "Email"}).encode()
            for n, name in ((1, "Name1"), (2, "Name2"), (3, "Renamed"))]  # fmt: skip
    counts = (await put_raw(s, ORG, "s2", "jc", 1, "Contact", raws)).counts
    assert (counts.changed, counts.unchanged) == (1, 2)  # the sealed heads were compared in clear
    renamed = await s.record_as_of(ORG, "Contact", sf_id("003", 3), None)
    assert (
        json.loads(renamed.values_json)["Email"] == EMAILS[2]
        and json.loads(renamed.values_json)["LastName"] == "Renamed"
    )
    stored = await _all_text(harness)
    assert not any(e in stored for e in EMAILS) and "1980-02-0" not in stored


@pytest.mark.integration
async def test_marking_a_field_sensitive_later_seals_its_past_values_and_is_no_change(harness: Harness) -> None:
    s = _keyed(harness, Keyring(KEK1))
    plain = dataclasses.replace(CONTACT, fields=tuple(dataclasses.replace(f, sensitive=False) for f in CONTACT.fields))
    await s.begin_job(ORG, "s1", "jc", DATA, "Contact")
    await s.put_schema(ORG, "s1", plain)
    await put_raw(s, ORG, "s1", "jc", 1, "Contact", [contact(n + 1, f"Name{n + 1}", e) for n, e in enumerate(EMAILS)])
    t1 = dt.datetime.now(dt.UTC)
    # the policy marks Email and Birth__c sensitive: the same values are no new version (no mass change); a new
    # e-mail is stored sealed
    counts = await _session(
        s, "s2", [contact(1, "Name1", EMAILS[0]), contact(2, "Name2", EMAILS[1]), contact(3, "Name3", "c.new@x.org")]
    )
    assert (counts["changed"], counts["unchanged"]) == (1, 2)
    t2 = dt.datetime.now(dt.UTC)
    # the values stored in clear before are sealed in the background (and again by reseal: nothing left)
    await s.sensitive.idle()
    stored = await _all_text(harness)
    assert not any(e in stored for e in [*EMAILS, "c.new@x.org", "1980-02-0"])
    assert await s.sensitive.reseal_all() == 0
    pieces = [p async for p in s.compare_as_of(ORG, t1, t2)]
    assert [(c.record_id, tuple(f.field for f in c.fields)) for p in pieces for c in p.changes] == [
        (sf_id("003", 3), ("Email",))
    ]
    history = await s.record_history(ORG, "Contact", sf_id("003", 3))
    assert [json.loads(v.values_json)["Email"] for v in history] == [EMAILS[2], "c.new@x.org"]


def _reseal_cli(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    env |= {
        "SFVAULT_DATABASE_URL": database_url,
        "SFVAULT_NATS_URL": "nats://127.0.0.1:1",  # required by the settings; reseal never connects
        "SFVAULT_AUTH_DISABLED": "true",
        "SFVAULT_STORAGE_ENCRYPTION_KEY_REF": "env:TEST_KEK",
        "TEST_KEK": KEK1.hex(),
    }
    cmd = [sys.executable, "-m", "services.storage", "reseal"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.integration
async def test_the_reseal_command_seals_what_was_stored_in_clear(harness: Harness, database_url: str) -> None:
    s = _keyed(harness, Keyring(KEK1))
    plain = dataclasses.replace(CONTACT, fields=tuple(dataclasses.replace(f, sensitive=False) for f in CONTACT.fields))
    await s.begin_job(ORG, "s1", "jc", DATA, "Contact")
    await s.put_schema(ORG, "s1", plain)
    await put_raw(s, ORG, "s1", "jc", 1, "Contact", [contact(n + 1, f"Name{n + 1}", e) for n, e in enumerate(EMAILS)])
    org_key = await s._org_key(ORG)
    await harness.store.put_schema(org_key, "s2", CONTACT, None)  # marked, and no storage running to seal
    assert EMAILS[0] in await _all_text(harness)
    done = _reseal_cli(database_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"resealed": 3}
    stored = await _all_text(harness)
    assert not any(e in stored for e in EMAILS) and "1980-02-0" not in stored
    version = await s.record_as_of(ORG, "Contact", sf_id("003", 2), None)
    assert json.loads(version.values_json)["Email"] == EMAILS[1]
